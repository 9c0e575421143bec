"""RouterConfig from the ROLLOUT_* environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from router.config import RouterConfig


def test_defaults_follow_rollout_home(tmp_path: Path) -> None:
    config = RouterConfig.from_env({"ROLLOUT_HOME": str(tmp_path)})
    assert config.store_url == f"sqlite:///{tmp_path / 'rollout.db'}"
    assert config.registry_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert config.artifact_root == (tmp_path / "artifacts").as_uri()
    assert config.environment == "prod"
    assert config.default_model is None
    assert (config.plan_poll_s, config.max_body_bytes, config.log_sample_rate) == (
        0.5,
        1 << 20,
        1.0,
    )


def test_variables_and_overrides(tmp_path: Path) -> None:
    env = {
        "ROLLOUT_HOME": str(tmp_path),
        "ROLLOUT_STORE_URL": "postgresql://router@db/rollout",
        "ROLLOUT_REGISTRY_URI": "http://mlflow:5000",
        "ROLLOUT_ENVIRONMENT": "staging",
        "ROLLOUT_DEFAULT_MODEL": "fraud",
        "ROLLOUT_PLAN_POLL_S": "0.2",
        "ROLLOUT_MAX_BODY_BYTES": "4096",
        "ROLLOUT_LOG_SAMPLE_RATE": "0.1",
        "ROLLOUT_LOG_BATCH_SIZE": "64",
        "ROLLOUT_LOG_FLUSH_S": "1.5",
    }
    config = RouterConfig.from_env(env, environment="dev", default_model=None)
    assert config.store_url == "postgresql://router@db/rollout"
    assert config.registry_uri == "http://mlflow:5000"
    assert config.environment == "dev"  # the override wins; None overrides are ignored
    assert config.default_model == "fraud"
    assert (config.plan_poll_s, config.max_body_bytes) == (0.2, 4096)
    assert (config.log_sample_rate, config.log_batch_size, config.log_flush_s) == (0.1, 64, 1.5)
    # env() rebuilds the same configuration (what worker processes do).
    assert RouterConfig.from_env(config.env()) == config


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("ROLLOUT_PLAN_POLL_S", "fast", "ROLLOUT_PLAN_POLL_S='fast'"),
        ("ROLLOUT_PLAN_POLL_S", "0", "plan_poll_s must be > 0"),
        ("ROLLOUT_LOG_SAMPLE_RATE", "1.5", "log_sample_rate must be 0..1"),
        ("ROLLOUT_MAX_BODY_BYTES", "-1", "max_body_bytes must be > 0"),
    ],
)
def test_bad_values_name_the_problem(
    tmp_path: Path, variable: str, value: str, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
        RouterConfig.from_env({"ROLLOUT_HOME": str(tmp_path), variable: value})


def test_serving_settings_round_trip(tmp_path: Path) -> None:
    digest = "ab" * 32
    env = {
        "ROLLOUT_HOME": str(tmp_path),
        "ROLLOUT_PREDICT_TIMEOUT_S": "0.25",
        "ROLLOUT_PIN_TOKEN_SHA256": f" {digest.upper()} , {'cd' * 32}",
        "ROLLOUT_BATCH_MAX_SIZE": "32",
        "ROLLOUT_BATCH_MAX_WAIT_S": "0.002",
    }
    config = RouterConfig.from_env(env)
    assert config.predict_timeout_s == 0.25
    assert config.pin_token_sha256 == (digest, "cd" * 32)
    assert (config.batch_max_size, config.batch_max_wait_s) == (32, 0.002)
    assert RouterConfig.from_env(config.env()) == config


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("ROLLOUT_PREDICT_TIMEOUT_S", "0", "predict_timeout_s must be > 0"),
        ("ROLLOUT_BATCH_MAX_SIZE", "0", "batch_max_size must be >= 1"),
        ("ROLLOUT_BATCH_MAX_WAIT_S", "-1", "batch_max_wait_s must be >= 0"),
        ("ROLLOUT_PIN_TOKEN_SHA256", "secret", "is not a lowercase sha256 hex digest"),
    ],
)
def test_bad_serving_settings_name_the_problem(
    tmp_path: Path, variable: str, value: str, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        RouterConfig.from_env({"ROLLOUT_HOME": str(tmp_path), variable: value})


def test_label_settings_round_trip_and_the_key_stays_out_of_repr(tmp_path: Path) -> None:
    digest = "ab" * 32
    env = {
        "ROLLOUT_HOME": str(tmp_path),
        "ROLLOUT_LABEL_TOKEN_SHA256": f" {digest.upper()} ,",
        "ROLLOUT_ALLOW_ANONYMOUS_LABELS": "no",
        "ROLLOUT_REQUEST_ID_KEY": "the-shared-request-id-key",
        "ROLLOUT_LABEL_MAX_AGE_S": "3600",
        "ROLLOUT_LABEL_MAX_ITEMS": "10",
        "ROLLOUT_LABEL_MAX_BYTES": "100",
        "ROLLOUT_LABEL_MAX_BODY_BYTES": "2048",
    }
    config = RouterConfig.from_env(env)
    assert config.label_token_sha256 == (digest,)
    assert (config.allow_anonymous_labels, config.request_id_key) == (
        False,
        "the-shared-request-id-key",
    )
    assert (config.label_max_age_s, config.label_max_items) == (3600.0, 10)
    assert (config.label_max_bytes, config.label_max_body_bytes) == (100, 2048)
    assert "the-shared-request-id-key" not in repr(config)
    assert RouterConfig.from_env(config.env()) == config


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("ROLLOUT_LABEL_TOKEN_SHA256", "not-a-digest", "label_token_sha256: 'not-a-digest'"),
        ("ROLLOUT_LABEL_MAX_ITEMS", "0", "label_max_items must be > 0, got 0"),
        ("ROLLOUT_LABEL_MAX_AGE_S", "-1", "label_max_age_s must be > 0"),
        ("ROLLOUT_ALLOW_ANONYMOUS_LABELS", "maybe", "ROLLOUT_ALLOW_ANONYMOUS_LABELS='maybe'"),
    ],
)
def test_bad_label_settings_name_the_problem(
    tmp_path: Path, variable: str, value: str, fragment: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        RouterConfig.from_env({"ROLLOUT_HOME": str(tmp_path), variable: value})
