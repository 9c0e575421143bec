"""Environments: their order and their approval policy (README, "Environments, approvals").

``dev → staging → prod`` by default. Each :class:`Environment` says whether a promotion there
needs an approval (``approval_required``: on for ``prod`` unless its ``approval`` says
``required: false``), whether the approver must be someone other than who started the rollout
(``distinct_approver``: on for ``prod``), and how long a rollout may wait
for the approval before ``on_approval_timeout`` (``rollback`` or ``abort``) applies.

A name outside the configured order (a typo such as ``prd``) is refused wherever it is named
(the CLI, the API with 422 ``unknown_environment``, a spec's ``environment``) by
:meth:`Environments.check`, which lists the configured names and suggests the closest.

The order rule (enforced by the manager): once a model has releases in an environment, a
version enters the next one only after it succeeded there, as the same artifact (same digest).
A model that never used the earlier environment is not held back by it (so a team without a
staging environment, or the demo, can release to ``prod`` directly).

Configure with a YAML file (``$ROLLOUT_ENVIRONMENTS_FILE``, else ``$ROLLOUT_HOME/environments.yaml``
when it exists)::

    environments:
      - dev
      - staging
      - {name: prod, approval: {required: true, distinct_approver: true, timeout: 24h,
                                on_timeout: rollback},
         slo: {error_rate: {max: 0.01}, latency: {quantile: 0.99, max_ms: 250}},
         watch: 30m, retention: {days: 14, max_rows: 5000000},
         monitor: {window: 1h, on_degradation: rollback}}

``slo`` is the SLO a 100% step holds the candidate to when its spec gives none (else
``rollout.spec.DEFAULT_SLO``); ``watch`` how long a promoted release is watched (and rolled
back by itself on a failing gate) when its spec gives no ``watch`` (unset: not watched);
``retention`` how long its prediction log keeps rows (:mod:`rollout.store.retention`; unset:
for ever); ``monitor`` the windows every serving release is monitored in (``window``, an hour
by default, at least a minute) and what a degradation found by the change detectors does
(``on_degradation``: ``alert``, the default, a webhook and a note in ``rollout monitor``; or
``rollback`` too, to the previous release; :mod:`rollout.degradation`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from rollout.errors import Invalid, SpecError
from rollout.lifecycle import OnApprovalTimeout
from rollout.spec import OptionalDuration, SloSpec, format_errors
from rollout.spec.document import parse_yaml, read_spec_file
from rollout.spec.fields import Duration, WatchDuration
from rollout.store.retention import RetentionPolicy


class UnknownEnvironment(Invalid):
    """An environment name that is not in the configured order (422 through the API)."""

    code = "unknown_environment"


KEEP_ALL = RetentionPolicy()  # no retention: the prediction log keeps every row
OnDegradation = Literal["alert", "rollback"]
MONITOR_WINDOW_S = 3600.0


@dataclass(frozen=True)
class Environment:
    name: str
    approval_required: bool = False
    distinct_approver: bool = False
    approval_timeout_s: float | None = None
    on_approval_timeout: OnApprovalTimeout = "rollback"
    slo: SloSpec | None = None  # the SLO of a spec that gives none (None: DEFAULT_SLO)
    watch_s: float = 0.0  # how long a promoted release is watched when its spec does not say
    retention: RetentionPolicy = KEEP_ALL  # of its prediction log
    monitor_window_s: float = MONITOR_WINDOW_S  # the serving release's monitoring windows
    on_degradation: OnDegradation = "alert"  # a change detector's alarm: alert, or roll back


DEFAULT_ENVIRONMENTS: tuple[Environment, ...] = (
    Environment("dev"),
    Environment("staging"),
    Environment("prod", approval_required=True, distinct_approver=True),
)


@dataclass(frozen=True)
class Environments:
    """The ordered environments. :meth:`check` refuses a name outside the order (everything
    a user names goes through it); :meth:`get` gives such a name a permissive default policy
    (for rows written before the order changed)."""

    ordered: tuple[Environment, ...] = DEFAULT_ENVIRONMENTS
    source: str = "the default order; configure it in $ROLLOUT_HOME/environments.yaml"

    @classmethod
    def of(cls, value: Environments | Sequence[str | Environment] | None) -> Environments:
        if value is None:
            return cls()
        if isinstance(value, Environments):
            return value
        defaults = {env.name: env for env in DEFAULT_ENVIRONMENTS}
        return cls(
            tuple(defaults.get(v, Environment(v)) if isinstance(v, str) else v for v in value),
            source="as given to the manager",
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(env.name for env in self.ordered)

    def get(self, name: str) -> Environment:
        for env in self.ordered:
            if env.name == name:
                return env
        return Environment(name)

    def check(self, name: str, field: str = "environment") -> Environment:
        """The environment ``name``; :class:`UnknownEnvironment` naming ``field``, the
        configured environments and the closest name when it is not one of them."""
        for env in self.ordered:
            if env.name == name:
                return env
        names = self.names
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownEnvironment(
            f"{field}: {name!r} is not a configured environment: expected one of "
            f"{', '.join(names)} ({self.source}){hint}"
        )

    def previous(self, name: str) -> str | None:
        """The environment a version must have succeeded in before ``name``, if any."""
        names = self.names
        if name not in names or names.index(name) == 0:
            return None
        return names[names.index(name) - 1]


class _ApprovalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    required: bool | None = None  # None: required in prod only
    distinct_approver: bool | None = None
    timeout_s: OptionalDuration = Field(default=None, alias="timeout")
    on_timeout: OnApprovalTimeout = "rollback"


class _RetentionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    days: float | None = Field(default=None, gt=0)
    max_rows: int | None = Field(default=None, ge=1)


def _window(value: float) -> float:
    if not 60.0 <= value <= 86_400.0:
        raise ValueError(f"must be from 1m to 24h, got {value:g} s")
    return value


class _MonitorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    window_s: Annotated[Duration, AfterValidator(_window)] = Field(
        default=MONITOR_WINDOW_S, alias="window"
    )
    on_degradation: OnDegradation = "alert"


class _EnvironmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    approval: _ApprovalConfig = _ApprovalConfig()
    slo: SloSpec | None = None
    watch_s: WatchDuration = Field(default=None, alias="watch")
    retention: _RetentionConfig = _RetentionConfig()
    monitor: _MonitorConfig = _MonitorConfig()


class _EnvironmentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    environments: tuple[_EnvironmentConfig, ...]

    @field_validator("environments", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("environments")
    @classmethod
    def _unique(cls, value: tuple[_EnvironmentConfig, ...]) -> tuple[_EnvironmentConfig, ...]:
        if not value:
            raise ValueError("must list at least one environment")
        names = [env.name for env in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"environment {name!r} is listed twice")
        return value


def parse_environments(data: Mapping[str, Any], where: str = "") -> Environments:
    """Validate an ``environments:`` mapping; SpecError names the field."""
    try:
        parsed = _EnvironmentsFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(where + format_errors(exc)) from None
    return Environments(
        tuple(
            Environment(
                name=env.name,
                approval_required=(
                    env.approval.required
                    if env.approval.required is not None
                    else env.name == "prod"
                ),
                distinct_approver=(
                    env.approval.distinct_approver
                    if env.approval.distinct_approver is not None
                    else env.name == "prod"
                ),
                approval_timeout_s=env.approval.timeout_s,
                on_approval_timeout=env.approval.on_timeout,
                slo=env.slo,
                watch_s=env.watch_s or 0.0,
                retention=RetentionPolicy(env.retention.days, env.retention.max_rows),
                monitor_window_s=env.monitor.window_s,
                on_degradation=env.monitor.on_degradation,
            )
            for env in parsed.environments
        )
    )


def load_environments(path: Path | None) -> Environments:
    """The environments of ``path`` (YAML); the defaults when ``path`` is None."""
    if path is None:
        return Environments()
    data = parse_yaml(read_spec_file(path), f"{path}: ")
    if not isinstance(data, Mapping):
        raise SpecError(f"{path}: expected a mapping with 'environments', got {data!r}")
    return replace(parse_environments(data, f"{path}: "), source=f"from {path}")
