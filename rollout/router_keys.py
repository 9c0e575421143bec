"""The router's secrets for ``rollout up`` and the demo: a request id key and a label token.

:func:`router_secrets` creates, once, in ``<home>/secrets/`` (mode 0700, files 0600):

- ``request-id.key``: the key every router started from this home signs request ids with
  (``ROLLOUT_REQUEST_ID_KEY_FILE``), so a label reaches any of them;
- ``label-writer.token``: a bearer token that may post labels to ``/v1/feedback``; the routers
  get only its sha256 (``ROLLOUT_LABEL_TOKEN_SHA256``).

:meth:`RouterSecrets.env` is what a router process needs; variables already set in the
environment win (a key configured by hand stays; configured label digests are kept and the
home's token is added).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "request-id.key"
TOKEN_FILE = "label-writer.token"


@dataclass(frozen=True)
class RouterSecrets:
    key_file: Path
    token_file: Path
    label_token: str

    def env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a router process started from this home."""
        current = os.environ if environ is None else environ
        out: dict[str, str] = {}
        if not current.get("ROLLOUT_REQUEST_ID_KEY") and not current.get(
            "ROLLOUT_REQUEST_ID_KEY_FILE"
        ):
            out["ROLLOUT_REQUEST_ID_KEY_FILE"] = str(self.key_file)
        digest = hashlib.sha256(self.label_token.encode()).hexdigest()
        configured = [d for d in current.get("ROLLOUT_LABEL_TOKEN_SHA256", "").split(",") if d]
        out["ROLLOUT_LABEL_TOKEN_SHA256"] = ",".join([*configured, digest])
        return out


def router_secrets(home: Path) -> RouterSecrets:
    """The home's router secrets, created (mode 0600) on first use."""
    directory = home / "secrets"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file = directory / KEY_FILE
    token_file = directory / TOKEN_FILE
    _create_once(key_file, secrets.token_hex(32))
    _create_once(token_file, secrets.token_urlsafe(32))
    token = token_file.read_text().strip()
    return RouterSecrets(key_file, token_file, token)


def _create_once(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
