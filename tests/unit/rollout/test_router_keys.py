"""The router secrets of ``rollout up`` and the demo: made once, private, passed by reference."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from rollout.router_keys import router_secrets


def test_secrets_are_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = router_secrets(tmp_path)
    again = router_secrets(tmp_path)
    assert again == first
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    for path in (first.key_file, first.token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.key_file.read_text().strip()) == 64
    assert len(first.label_token) >= 40


def test_the_router_gets_the_key_file_and_only_the_tokens_digest(tmp_path: Path) -> None:
    made = router_secrets(tmp_path)
    digest = hashlib.sha256(made.label_token.encode()).hexdigest()
    assert made.env({}) == {
        "ROLLOUT_REQUEST_ID_KEY_FILE": str(made.key_file),
        "ROLLOUT_LABEL_TOKEN_SHA256": digest,
    }
    assert made.label_token not in "".join(made.env({}).values())


def test_settings_made_by_hand_win(tmp_path: Path) -> None:
    made = router_secrets(tmp_path)
    digest = hashlib.sha256(made.label_token.encode()).hexdigest()
    env = made.env({"ROLLOUT_REQUEST_ID_KEY": "x" * 32, "ROLLOUT_LABEL_TOKEN_SHA256": "a" * 64})
    assert env == {"ROLLOUT_LABEL_TOKEN_SHA256": f"{'a' * 64},{digest}"}
