"""``rollout api`` as a real process on loopback (SQLite and PostgreSQL stores, the demo's
MLflow registry) and ``rollout --api URL``: the CLI's verbs over HTTP as the token's identity;
token create / revoke / expiry; start-up without tokens; the embedded default's first admin
token."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from conftest import MODEL, DemoHome
from contract.sql.engine import open_engine
from contract.sql.schema import api_tokens, audit_log
from rollout.cli import main
from rollout.settings import Settings
from rollout.up import free_port

ROOT = "bootstrap-root-secret"


@dataclass
class Api:
    url: str
    proc: subprocess.Popen[bytes]
    settings: Settings
    log: Path


AUDIT_KEY = "5e" * 32  # every process of one store shares the audit chain's key


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")}
    return {**env, "ROLLOUT_AUDIT_KEY": AUDIT_KEY, **extra}


def start_api(settings: Settings, log: Path, env: dict[str, str], *extra: str) -> Api:
    """``rollout api`` on a free port; returns once /healthz answers (or the process ended)."""
    port = free_port()
    argv = [
        sys.executable, "-m", "rollout",
        "--home", str(settings.home),
        "--registry-uri", settings.registry_uri,
        "--store-url", settings.store_url,
        "api", "--port", str(port), *extra,
    ]  # fmt: skip
    out = log.open("wb")
    proc = subprocess.Popen(argv, env=_env(env), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return Api(url, proc, settings, log)


def stop(api: Api) -> None:
    if api.proc.poll() is None:
        api.proc.terminate()
        try:
            api.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.proc.kill()
            api.proc.wait()


@pytest.fixture
def api(home: DemoHome, store_url: str, tmp_path: Path) -> Iterator[Api]:
    from dataclasses import replace

    settings = replace(home.settings, store_url=store_url)
    digest = hashlib.sha256(ROOT.encode()).hexdigest()
    running = start_api(
        settings, tmp_path / "api.log", {"ROLLOUT_API_TOKENS": f"root:admin={digest}"}
    )
    assert running.proc.poll() is None, running.log.read_text()
    yield running
    stop(running)


def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    api_url: str | None,
    token: str | None,
    *argv: str,
) -> tuple[int, str, str]:
    """``rollout [--api URL] ...`` in this process with ``ROLLOUT_TOKEN``: (code, out, err)."""
    for key in list(os.environ):
        if key.startswith("ROLLOUT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ROLLOUT_AUDIT_KEY", AUDIT_KEY)
    if token is not None:
        monkeypatch.setenv("ROLLOUT_TOKEN", token)
    capsys.readouterr()
    code = main([*(["--api", api_url] if api_url else []), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def audit_rows(store_url: str) -> list[dict[str, object]]:
    engine = open_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    finally:
        engine.dispose()
    return [{**row._mapping, "detail": json.loads(row.detail)} for row in rows]


def test_cli_through_the_api_acts_as_the_token(
    api: Api,
    home: DemoHome,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def run(token: str | None, *argv: str) -> tuple[int, str, str]:
        return cli(capsys, monkeypatch, api.url, token, *argv)

    code, out, err = run(
        ROOT, "token", "create", "--identity", "sam", "--role", "scientist", "--expires", "30d"
    )
    assert code == 0, err
    sam = out.strip()
    assert sam.startswith("rlt_") and "shown once" in err

    code, out, err = run(
        sam, "start", MODEL, "--candidate", home.versions["baseline"], "--env", "dev",
        "--actor", "mallory",
    )  # fmt: skip
    assert code == 0, err
    assert "ignored with --api" in err
    assert f"initial release of {MODEL} v{home.versions['baseline']} in dev" in out

    code, out, err = run(sam, "status", MODEL, "--env", "dev")
    assert code == 0, err
    assert out.splitlines()[:2] == [
        f"{MODEL} in dev",
        f"  plan: v{home.versions['baseline']} 100% (generation 1)",
    ]
    code, out, _ = run(sam, "status", MODEL, "--env", "dev", "--json")
    assert json.loads(out)["alias_version"] == home.versions["baseline"]
    code, out, _ = run(sam, "history", MODEL, "--env", "dev")
    assert code == 0 and "initial" in out and "sam" in out

    # the API's refusal, with its message, exit 2; nothing changed
    code, out, err = run(sam, "promote", MODEL, "--env", "prod", "--actor", "mallory")
    assert code == 2 and out == ""
    assert "403 forbidden: sam may not promote in prod: needs role deployer or admin" in err
    code, _, err = run(sam, "pause", MODEL, "--env", "dev")
    assert code == 2 and err.startswith("error: 404 not_found")
    code, _, err = run(sam, "token", "list")
    assert code == 2 and "403 forbidden" in err

    rows = audit_rows(api.settings.store_url)
    started = [r for r in rows if r["verb"] == "start"]
    assert [(r["identity"], r["outcome"]) for r in started] == [("sam", "allowed")]
    assert "mallory" not in json.dumps(rows)
    assert [(r["identity"], r["verb"], r["outcome"]) for r in rows if r["verb"] == "promote"] == [
        ("sam", "promote", "denied")
    ]

    code, out, err = run(sam, "audit", "--verify")
    assert (code, out.split(":")[0]) == (0, "audit log ok")
    code, out, _ = run(sam, "audit", "--json", "--limit", "3")
    assert [row["verb"] for row in json.loads(out)] == ["pause", "promote", "start"]

    # revoked: the next call is refused
    code, out, err = run(ROOT, "token", "revoke", "sam")
    assert code == 0 and out.startswith("revoked tok_")
    code, out, err = run(sam, "status", MODEL, "--env", "dev")
    assert code == 2 and "401 unauthenticated: unknown, expired or revoked token" in err

    # expired: a token whose time has passed (its row as the clock would leave it)
    code, out, _ = run(ROOT, "token", "create", "--identity", "tim", "--role", "viewer")
    tim = out.strip()
    assert run(tim, "status", MODEL, "--env", "dev")[0] == 0
    engine = open_engine(api.settings.store_url)
    with engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.identity == "tim")
            .values(expires_at=time.time() - 1)
        )
    engine.dispose()
    code, _, err = run(tim, "status", MODEL, "--env", "dev")
    assert code == 2 and "401 unauthenticated" in err
    code, out, _ = run(ROOT, "token", "list", "--json")
    states = {t["identity"]: t["state"] for t in json.loads(out)}
    assert states == {"sam": "revoked", "tim": "expired"}
    assert sam not in out and tim not in out

    # no token at all: said at once, nothing sent
    code, _, err = run(None, "status", MODEL, "--env", "dev")
    assert code == 2 and "ROLLOUT_TOKEN" in err

    # ROLLOUT_API_URL instead of --api, and the token from a file
    code, out, _ = run(ROOT, "token", "create", "--identity", "val", "--role", "viewer")
    token_file = tmp_path / "val-token"
    token_file.write_text(out)
    monkeypatch.setenv("ROLLOUT_API_URL", api.url)
    capsys.readouterr()
    assert main(["--token-file", str(token_file), "history", MODEL, "--env", "dev"]) == 0
    assert "initial" in capsys.readouterr().out
    assert main(["--token-file", str(tmp_path / "missing"), "history", MODEL, "--env", "dev"]) == 2
    assert "--token-file" in capsys.readouterr().err
    assert main(["monitor", MODEL, "--env", "dev"]) == 2
    assert "not available through the API" in capsys.readouterr().err


def test_direct_store_access_is_audited_as_such(
    home: DemoHome, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = [
        "--home", str(home.settings.home), "--registry-uri", home.settings.registry_uri,
        "--store-url", home.settings.store_url,
    ]  # fmt: skip
    code, _, err = cli(
        capsys, monkeypatch, None, None,
        *base, "token", "create", "--identity", "ana", "--role", "viewer", "--actor", "ops",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = cli(
        capsys, monkeypatch, None, None,
        *base, "start", MODEL, "--candidate", home.versions["baseline"], "--env", "dev",
        "--actor", "ops",
    )  # fmt: skip
    assert code == 0, err
    rows = [
        r for r in audit_rows(home.settings.store_url) if r["detail"].get("kind") != "transition"
    ]
    assert [(r["identity"], r["verb"], r["detail"]["via"]) for r in rows] == [
        ("ops", "token_create", "store"),
        ("ops", "start", "store"),
    ]
    assert all(r["detail"]["os_user"] for r in rows)


def test_api_refuses_to_start_without_tokens(home: DemoHome, tmp_path: Path) -> None:
    from dataclasses import replace

    # not the embedded default: the store is not the home's own rollout.db
    settings = replace(home.settings, store_url=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    refused = start_api(settings, tmp_path / "refused.log", {})
    assert refused.proc.wait(timeout=60) == 2
    said = refused.log.read_text()
    assert "the API has no tokens" in said and "rollout token create" in said
    assert "--insecure-dev" in said
    assert not (settings.home / "admin-token").exists()

    # a token limited to an environment that is not in the order would act nowhere: refused
    typo = {"ROLLOUT_API_TOKENS": "ci:deployer@staging+prd=" + "a" * 64}
    refused = start_api(settings, tmp_path / "typo.log", typo)
    assert refused.proc.wait(timeout=60) == 2
    assert refused.log.read_text().strip() == (
        "error: ROLLOUT_API_TOKENS (ci): 'prd' is not a configured environment: expected one "
        f"of dev, staging, prod (from {settings.environments_file}); did you mean 'prod'?"
    )

    dev = start_api(settings, tmp_path / "dev.log", {}, "--insecure-dev")
    try:
        assert dev.proc.poll() is None, dev.log.read_text()
        status = httpx.get(f"{dev.url}/v1/models/{MODEL}/environments/dev/status", timeout=10)
        assert status.status_code == 401
        # a token made on the store later is good at once, without a restart
        engine = open_engine(settings.store_url)
        from rollout.store.tokens import TokenStore
        from rollout.tokens import issue

        token = issue(TokenStore(engine), "ops", ["viewer"], None, "1d", "test").token
        engine.dispose()
        again = httpx.get(
            f"{dev.url}/v1/models/{MODEL}/environments/dev/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert again.status_code == 200
    finally:
        stop(dev)


def test_embedded_default_makes_the_first_admin_token(home: DemoHome, tmp_path: Path) -> None:
    first = start_api(home.settings, tmp_path / "first.log", {})
    try:
        assert first.proc.poll() is None, first.log.read_text()
        path = home.settings.home / "admin-token"
        assert f"wrote it to {path} (mode 0600)" in first.log.read_text()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        answer = httpx.get(
            f"{first.url}/v1/tokens", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code == 200
        assert [(t["identity"], t["roles"], t["expires_at"]) for t in answer.json()] == [
            ("admin", ["admin"], None)
        ]
    finally:
        stop(first)
    # a second start makes no other token and keeps the file
    second = start_api(home.settings, tmp_path / "second.log", {})
    try:
        assert second.proc.poll() is None, second.log.read_text()
        assert "first admin token" not in second.log.read_text()
        assert path.read_text().strip() == token
        engine = open_engine(home.settings.store_url)
        with engine.connect() as conn:
            assert conn.execute(select(api_tokens.c.identity)).scalars().all() == ["admin"]
        engine.dispose()
    finally:
        stop(second)


def test_the_output_through_the_api_is_the_stores(
    api: Api,
    home: DemoHome,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    s = api.settings
    base = ["--home", str(s.home), "--registry-uri", s.registry_uri, "--store-url", s.store_url]
    v1, v2 = home.versions["baseline"], home.versions["better"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {MODEL}\ncandidate: {v1}\nenvironment: prod\n"
        "strategy: {linear: {steps: 4, min_requests: 50, max_duration: 1m}}\n"
    )

    def both(*argv: str, lines: int | None = None) -> str:
        """The same command through the API and on the store: the same output (its first
        ``lines``, when the rest says how long something has run)."""
        code, through_api, err = cli(capsys, monkeypatch, api.url, ROOT, *argv)
        assert code == 0, err
        code, direct, err = cli(capsys, monkeypatch, None, None, *base, *argv)
        assert code == 0, err
        assert through_api.splitlines()[:lines] == direct.splitlines()[:lines]
        return through_api

    assert f"would: initial release of v{v1} in prod" in both("plan", "-f", str(spec))
    both("plan", "-f", str(spec), "--json")
    code, out, err = cli(capsys, monkeypatch, api.url, ROOT, "apply", "-f", str(spec))
    assert code == 0 and "with new config v1: succeeded" in out, err
    rollout_id = out.split()[2]
    report = both("report", rollout_id)
    assert report.startswith(f"{rollout_id}: bc v{v1} in prod (linear), succeeded; started by root")
    assert report.endswith(
        f"drift report: none yet on the API; dashboard page: /ui/rollouts/{rollout_id}\n"
    )
    both("report", rollout_id, "--json")
    both("events", rollout_id)
    assert "initial" in both("history", MODEL, "--env", "prod")
    both("history", MODEL, "--env", "prod", "--json")

    code, out, err = cli(
        capsys, monkeypatch, api.url, ROOT, "start", MODEL, "--candidate", v2, "--env", "prod"
    )
    assert code == 0, err
    started = out.split(":")[0]
    assert both("status", MODEL, "--env", "prod", lines=4).count(f"rollout {started}: ") == 1
    for verb, state in (("pause", "paused"), ("resume", "progressing"), ("abort", "aborted")):
        code, out, err = cli(
            capsys, monkeypatch, api.url, ROOT, verb, MODEL, "--env", "prod", "--reason", "test"
        )
        assert (code, out.split(":")[:2]) == (0, [started, f" {state}"]), err
    assert "aborted" in both("status", MODEL, "--env", "prod")
    code, out, err = cli(
        capsys, monkeypatch, api.url, ROOT,
        "status", MODEL, "--env", "prod", "--watch", "--interval", "0.5",
    )  # fmt: skip
    assert code == 0 and out.count(f"{MODEL} in prod") == 1  # not active: printed once

    code, out, err = cli(
        capsys, monkeypatch, api.url, ROOT, "start", MODEL, "--candidate", v2, "--env", "prod"
    )
    assert code == 0, err
    code, out, err = cli(
        capsys, monkeypatch, api.url, ROOT, "rollback", MODEL, "--env", "prod", "--reason", "why"
    )
    assert code == 0, err
    assert out.startswith("release ") and "serves prod" in out.splitlines()[0]
    assert "rolled_back" in both("history", MODEL, "--env", "prod")
    # the calls (the manager's transitions they caused are rows of their own, kind transition)
    rows = [r for r in audit_rows(s.store_url) if r["detail"].get("kind") != "transition"]
    assert [(r["identity"], r["verb"], r["outcome"]) for r in rows] == [
        ("root", "apply", "allowed"), ("root", "start", "allowed"), ("root", "pause", "allowed"),
        ("root", "resume", "allowed"), ("root", "abort", "allowed"), ("root", "start", "allowed"),
        ("root", "rollback", "allowed"),
    ]  # fmt: skip


def test_rollout_up_makes_the_first_admin_token_once(home: DemoHome) -> None:
    from dataclasses import replace

    from rollout.up import first_admin_token

    path = first_admin_token(home.settings)
    assert path == home.settings.home / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("rlt_")
    assert first_admin_token(home.settings) is None  # a token exists: none made
    digest = hashlib.sha256(b"x").hexdigest()
    with_env = replace(
        home.settings, api_tokens=f"ops:admin={digest}", home=home.settings.home / "b"
    )
    with_env = replace(with_env, store_url=f"sqlite:///{with_env.home / 'rollout.db'}")
    assert first_admin_token(with_env) is None  # ROLLOUT_API_TOKENS holds one: none made
    not_embedded = replace(home.settings, store_url="sqlite:///" + str(home.settings.home / "x.db"))
    assert first_admin_token(not_embedded) is None
