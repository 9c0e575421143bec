"""Fresh secrets for compose.yaml, as a ``.env`` file: ``python deploy/make_env.py > .env``.

Prints every variable ``.env.example`` lists, each with a new random value (hex, so it needs no
escaping in a URL), and, commented out at the end, the tokens people and tools present (the
admin's API token, the label writer's, the pin token's owner is the manager): compose reads
only their sha256. Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import secrets
import sys


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_env() -> dict[str, str]:
    """Every variable compose.yaml reads, with fresh values; ``ROLLOUT_ADMIN_TOKEN`` and
    ``ROLLOUT_LABEL_TOKEN`` are not read by compose (it reads their digests)."""
    admin, label, pin, scrape = (secrets.token_hex(24) for _ in range(4))
    return {
        "POSTGRES_PASSWORD": secrets.token_hex(24),
        "MLFLOW_DB_PASSWORD": secrets.token_hex(24),
        "ROUTER_DB_PASSWORD": secrets.token_hex(24),
        "ROLLOUT_AUDIT_KEY": secrets.token_hex(32),
        "ROLLOUT_REQUEST_ID_KEY": secrets.token_hex(32),
        "ROLLOUT_LABEL_TOKEN_SHA256": sha256_hex(label),
        "ROLLOUT_PIN_TOKEN": pin,
        "ROLLOUT_PIN_TOKEN_SHA256": sha256_hex(pin),
        "ROLLOUT_API_TOKENS": f"admin:admin={sha256_hex(admin)}",
        "ROLLOUT_SCRAPE_TOKEN": scrape,
        "ROLLOUT_METRICS_TOKEN_SHA256": sha256_hex(scrape),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
        "ROLLOUT_ADMIN_TOKEN": admin,
        "ROLLOUT_LABEL_TOKEN": label,
    }


PEOPLE = {
    "ROLLOUT_ADMIN_TOKEN": "the API's admin token (ROLLOUT_TOKEN=... rollout --api URL ...)",
    "ROLLOUT_LABEL_TOKEN": "the labelling pipeline's bearer token for POST /v1/feedback",
}


def render(values: dict[str, str]) -> str:
    lines = [f"{name}={value}" for name, value in values.items() if name not in PEOPLE]
    lines.append("# Hand these on and delete them from this file (compose reads only digests):")
    lines += [f"# {name}={values[name]}  # {PEOPLE[name]}" for name in PEOPLE]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(make_env()))
