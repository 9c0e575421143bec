"""The audit key comes from outside the store: a variable, a file, or (embedded default) the
home's 0600 file made on first use; a server store configured from the environment without one
is refused, and a verifier never makes a key up."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rollout.audit_key import AuditKeyMissing, audit_key
from rollout.settings import Settings


def test_the_embedded_default_makes_a_0600_key_file_once_and_says_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rollout.audit_key"):
        key = audit_key(None, None, tmp_path, required=False)
    path = tmp_path / "audit.key"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(key) == 64 and key == path.read_bytes().strip()
    assert str(path) in caplog.text
    assert audit_key(None, None, tmp_path, required=False) == key  # the same key next time
    assert Settings.resolve(home=tmp_path).audit_key_bytes() == key


def test_a_variable_or_a_file_wins(tmp_path: Path) -> None:
    assert audit_key("v" * 32, None, tmp_path, required=True) == b"v" * 32
    key_file = tmp_path / "k"
    key_file.write_text("  " + "f" * 40 + "\n")
    assert audit_key(None, key_file, tmp_path, required=True) == b"f" * 40
    assert not (tmp_path / "audit.key").exists()


@pytest.mark.parametrize(
    ("key", "file_text", "message"),
    [
        ("short", None, "ROLLOUT_AUDIT_KEY: expected at least 32 characters, got 5"),
        (None, "tiny\n", "holds 4 characters, expected at least 32"),
        (None, "x" * 5000, "is over 4096 bytes"),
    ],
)
def test_an_unusable_key_is_refused_with_a_message(
    tmp_path: Path, key: str | None, file_text: str | None, message: str
) -> None:
    key_file = None
    if file_text is not None:
        key_file = tmp_path / "k"
        key_file.write_text(file_text)
    with pytest.raises(AuditKeyMissing, match=message):
        audit_key(key, key_file, tmp_path, required=False)


def test_a_server_store_without_a_key_is_refused(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"ROLLOUT_STORE_URL": "postgresql://rollout@db/rollout", "ROLLOUT_HOME": str(tmp_path)}
    )
    assert settings.audit_key_required
    with pytest.raises(AuditKeyMissing, match="set ROLLOUT_AUDIT_KEY_FILE"):
        settings.audit_key_bytes()
    assert not (tmp_path / "audit.key").exists()
    with_key = Settings.from_env(
        {"ROLLOUT_STORE_URL": "postgresql://rollout@db/rollout", "ROLLOUT_AUDIT_KEY": "a" * 32}
    )
    assert with_key.audit_key_bytes() == b"a" * 32


def test_a_verifier_never_makes_a_key_up(tmp_path: Path) -> None:
    with pytest.raises(AuditKeyMissing, match=r"audit\.key does not exist"):
        Settings.resolve(home=tmp_path).audit_key_bytes(create=False)
    assert not (tmp_path / "audit.key").exists()


def test_the_head_export_interval_is_checked() -> None:
    assert Settings.from_env({"ROLLOUT_AUDIT_HEAD_EVERY_S": "5"}).audit_head_every_s == 5.0
    with pytest.raises(ValueError, match="ROLLOUT_AUDIT_HEAD_EVERY_S: expected seconds"):
        Settings.from_env({"ROLLOUT_AUDIT_HEAD_EVERY_S": "nan"})
