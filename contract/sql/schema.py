"""The store's tables (SQLAlchemy Core). One place, so every process agrees on them.

The database itself is created and upgraded by the Alembic migrations in
:mod:`contract.sql.migrations` (one revision per change of this file; a test checks that the
migrated schema equals these tables).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

# Per (environment, model): who serves and how much. ``generation`` grows with every change.
traffic_plans = Table(
    "traffic_plans",
    metadata,
    Column("environment", String(64), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("baseline_version", String(32), nullable=False),
    Column("canary_version", String(32)),
    Column("canary_weight_pct", Integer, nullable=False, default=0),
    Column("shadow_version", String(32)),
    Column("shadow_fraction", Float, nullable=False, default=0.0),
    Column("sticky_key", String(255)),
    Column("rollout_id", String(64)),
    Column("generation", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    # The release (``releases.id``) that made the baseline version current here; NULL unknown.
    Column("baseline_release_id", Integer),
)

# One row per inference request (the payload may hold several rows: features/output are JSON lists).
predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("ts", Float, nullable=False),
    Column("environment", String(64), nullable=False),
    Column("model", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("arm", String(16), nullable=False),
    Column("rollout_id", String(64)),
    Column("plan_generation", Integer, nullable=False),
    Column("features", Text),
    Column("output", Text),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
    Column("status_code", Integer, nullable=False),
    Index("ix_predictions_request_id", "request_id"),
    Index("ix_predictions_rollout", "rollout_id", "arm", "ts"),
    Index("ix_predictions_model_ts", "environment", "model", "ts"),
)

# Delayed labels, joined to predictions by request id. The first label of a request wins;
# ``writer`` (which label writer's token stored it; NULL before migration 0009) may replace
# it, and each replaced label is kept in ``feedback_history``.
feedback = Table(
    "feedback",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("label", Text, nullable=False),
    Column("ts", Float, nullable=False),
    Column("writer", String(64)),
)

# Labels replaced by their own writer: the old value, when it was stored and when replaced.
feedback_history = Table(
    "feedback_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("label", Text, nullable=False),
    Column("ts", Float, nullable=False),
    Column("writer", String(64)),
    Column("replaced_at", Float, nullable=False),
    Index("ix_feedback_history_request_id", "request_id"),
)

_ACTIVE_ROLLOUT = "state NOT IN ('succeeded', 'rolled_back', 'aborted')"

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("model", String(255), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("baseline_version", String(32)),
    Column("candidate_version", String(32), nullable=False),
    Column("spec", Text, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("state", String(32), nullable=False),
    Column("step_index", Integer, nullable=False, default=0),
    Column("step_started_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_by", String(255), nullable=False),
    Column("approved_by", String(255)),
    Column("reason", Text),
    # Optimistic concurrency: every write is "UPDATE ... WHERE row_version = :seen".
    Column("row_version", Integer, nullable=False, default=0),
    Index("ix_rollouts_model_env", "environment", "model", "state"),
    # At most one active rollout per (environment, model).
    Index(
        "ux_rollouts_active",
        "environment",
        "model",
        unique=True,
        sqlite_where=text(_ACTIVE_ROLLOUT),
        postgresql_where=text(_ACTIVE_ROLLOUT),
    ),
)

rollout_events = Table(
    "rollout_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", String(64), nullable=False),
    Column("ts", Float, nullable=False),
    Column("from_state", String(32)),
    Column("to_state", String(32), nullable=False),
    Column("step_index", Integer),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Text),
    Index("ix_rollout_events_rollout", "rollout_id", "id"),
)

releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("previous_version", String(32)),
    Column("kind", String(32), nullable=False),  # initial | promotion | rollback
    Column("artifact_digest", String(80)),
    Column("run_id", String(64)),
    Column("git_commit", String(64)),
    Column("config_hash", String(64)),
    Column("rollout_id", String(64)),
    Column("started_by", String(255), nullable=False),
    Column("approved_by", String(255)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("outcome", String(32), nullable=False),
    Column("evidence", Text),
    Index("ix_releases_model_env", "environment", "model", "id"),
)

# Every distinct spec applied for (environment, model): config versions 1, 2, ...
rollout_configs = Table(
    "rollout_configs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("environment", String(64), nullable=False),
    Column("model", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=False),
    UniqueConstraint("environment", "model", "config_hash", name="uq_rollout_configs_hash"),
    UniqueConstraint("environment", "model", "version", name="uq_rollout_configs_version"),
)

# A finished rollout's bounded sample of its judged window (per arm: latencies, errors, outputs
# and some feature rows, JSON), taken by the manager before retention prunes the rows, so the
# dashboard's page still draws its distributions (rollout.store.page_samples).
rollout_samples = Table(
    "rollout_samples",
    metadata,
    Column("rollout_id", String(64), primary_key=True),
    Column("taken_at", Float, nullable=False),
    Column("since_ts", Float, nullable=False),
    Column("body", Text, nullable=False),
)

# The feature rows a serving version's inputs are compared with when its model has no training
# reference: its first window's (at most 2,000, by column, packed JSON), kept when first read,
# so that retention pruning those rows changes no comparison (rollout.degradation).
input_references = Table(
    "input_references",
    metadata,
    Column("environment", String(64), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("version", String(32), primary_key=True),
    Column("window_start", Float, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Dashboard sessions (rollout.web.sessions), shared by every API process on the store: the
# sha256 of the session id (the cookie), the sha256 of the API token it logged in with (asked
# again of the authenticator at every request), its CSRF token and times.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("token_sha256", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=False),
    Index("ix_dashboard_sessions_used", "used_at"),
)

# Who may drive rollouts now: one row per lease name, held until ``expires_at``.
manager_leases = Table(
    "manager_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Outbox of webhook notifications: written in the transaction of the state change it reports,
# delivered (signed, retried with backoff) by the manager loop; the row is the record.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("event", String(64), nullable=False),
    Column("rollout_id", String(64)),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

# Append-only, hash-chained log of every mutating API or CLI call, allowed or denied, and of
# every rollout transition the manager makes (:mod:`rollout.store.audit`). ``id`` is assigned by
# the appender (the previous id + 1) and ``prev_hash`` is unique, so two appenders that read the
# same last row cannot both insert. ``alg`` is ``hmac-sha256`` (keyed, migration 0011) or
# ``sha256`` (rows written before it, sealed by a keyed checkpoint row).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("identity", String(255), nullable=False),
    Column("verb", String(64), nullable=False),
    Column("model", String(255)),
    Column("environment", String(64)),
    Column("outcome", String(16), nullable=False),  # allowed | denied | failed
    Column("status_code", Integer, nullable=False),
    Column("detail", Text, nullable=False),  # canonical JSON
    Column("address", String(64)),  # the caller's address (API) or host (CLI)
    Column("user_agent", String(255)),  # the caller's User-Agent (API) or OS user (CLI)
    Column("count", Integer, nullable=False, server_default="1"),  # denials this row stands for
    Column("alg", String(16), nullable=False, server_default="sha256"),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
    Index("ix_audit_log_model_env", "environment", "model", "id"),
    Index("ix_audit_log_identity", "identity", "id"),
)

# Every look's bounds, per gate, for plots of a rollout's evidence (:mod:`rollout.store.looks`):
# a look is written when its window has grown, and each (rollout, step) keeps a bounded number
# of looks (every other one is dropped when it fills; the first and the newest stay).
look_bounds = Table(
    "look_bounds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", String(64), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("seq", Integer, nullable=False),  # the look's number in its step, from 0
    Column("ts", Float, nullable=False),
    Column("n_baseline", Integer, nullable=False),
    Column("n_canary", Integer, nullable=False),
    Column("gate", String(64), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("blocking", Boolean, nullable=False),
    Column("estimate", Float),  # NULL: not measured (a bound that does not exist yet, too)
    Column("low", Float),
    Column("high", Float),
    Column("threshold", Float),
    Index("ix_look_bounds_rollout", "rollout_id", "step_index", "seq"),
)

# The serving releases' monitoring windows (:mod:`rollout.degradation`): one row per version
# that served in a closed window (hourly by default) of a model in an environment, with its
# counts; the serving version's row carries its change detectors' state after the window and
# the alarm it raised, if any. The newest windows are what `rollout monitor` shows.
monitor_windows = Table(
    "monitor_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("environment", String(64), nullable=False),
    Column("model", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("labelled", Integer, nullable=False),
    Column("wrong", Integer, nullable=False),
    Column("summary", Text, nullable=False),  # JSON: latency quantiles and bins, outputs
    Column("detectors", Text),  # JSON: each stream's bound and detector (NULL: not judged)
    Column("alarm", Text),  # the alarm this window raised (NULL: none)
    Column("created_at", Float, nullable=False),
    UniqueConstraint("environment", "model", "version", "start", name="uq_monitor_windows"),
    Index("ix_monitor_windows_model", "environment", "model", "start"),
)

# The API's tokens made with ``rollout token create`` (:mod:`rollout.store.tokens`): only the
# sha256 of each token is stored. A token is good until ``expires_at`` (NULL: never) unless
# ``revoked_at`` is set. ``roles`` is "role+role"; ``environments`` "env+env" (NULL: all).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("identity", String(255), nullable=False),
    Column("roles", String(255), nullable=False),
    Column("environments", Text),
    Column("token_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("revoked_by", String(255)),
    Column("last_used_at", Float),
    UniqueConstraint("token_sha256", name="uq_api_tokens_sha256"),
    Index("ix_api_tokens_identity", "identity"),
)
