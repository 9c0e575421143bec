"""The ``rollout`` command line, called as ``main([...])`` against the real registry and store."""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MODEL, DemoHome
from rollout.cli import main
from rollout.up import free_port, taken_port


def base_args(home: DemoHome) -> list[str]:
    s = home.settings
    return ["--home", str(s.home), "--registry-uri", s.registry_uri, "--store-url", s.store_url]


def run(home: DemoHome, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*base_args(home), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_walks_a_release_history(
    home: DemoHome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    code, out, _ = run(home, capsys, "start", MODEL, "--candidate", v1, "--env", "prod")
    assert code == 0
    assert f"initial release of bc v{v1} in prod" in out

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "strategy:\n  canary:\n    steps:\n      - {weight: 10, min_requests: 1000}\n"
        "analysis:\n  gates: [error_rate]\n"
    )
    code, out, _ = run(
        home, capsys, "start", MODEL, "--candidate", v2, "--env", "prod", "-f", str(spec),
        "--actor", "alice",
    )  # fmt: skip
    assert code == 0
    rollout_id = out.split(":")[0]
    assert out.startswith(f"{rollout_id}: progressing: verified")

    code, out, _ = run(home, capsys, "status", MODEL, "--env", "prod")
    assert code == 0
    assert f"plan: v{v1} 90% + canary v{v2} 10%" in out
    assert f"alias @prod: v{v1}" in out
    assert f"rollout {rollout_id}: progressing" in out
    assert "0/1000 canary requests" in out
    assert "error_rate" in out  # the live gate table

    code, out, _ = run(home, capsys, "status", MODEL, "--env", "prod", "--json")
    status = json.loads(out)
    assert status["plan"]["canary_weight_pct"] == 10
    assert status["rollout"]["state"] == "progressing"
    (gate,) = status["rollout"]["spec"]["analysis"]["gates"]
    assert (gate["error_rate"]["max_increase"], gate["error_rate"]["min_n"]) == (0.005, 100)

    code, out, _ = run(home, capsys, "promote", MODEL, "--env", "prod", "--actor", "bob")
    assert code == 0
    assert out.startswith(f"{rollout_id}: succeeded: v{v2} promoted in prod")

    code, out, _ = run(home, capsys, "history", MODEL, "--env", "prod")
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["release", "kind", "version", "previous", "outcome"]
    assert lines[2].split()[:5] == ["2", "promotion", f"v{v2}", f"v{v1}", "succeeded"]
    assert lines[3].split()[:5] == ["1", "initial", f"v{v1}", "-", "succeeded"]

    code, out, _ = run(home, capsys, "rollback", MODEL, "--env", "prod", "--to", "1")
    assert code == 0
    assert out.startswith(f"release 3: bc v{v1} serves prod")

    code, out, _ = run(home, capsys, "history", MODEL, "--env", "prod", "--json")
    releases = json.loads(out)
    assert [(r["id"], r["kind"], r["version"]) for r in releases] == [
        (3, "rollback", v1),
        (2, "promotion", v2),
        (1, "initial", v1),
    ]
    assert releases[1]["artifact_digest"].startswith("sha256:")
    assert len(releases[1]["config_hash"]) == 64

    code, out, _ = run(home, capsys, "events", rollout_id)
    assert code == 0
    assert "pending → verifying" in out
    assert "promoting → succeeded" in out
    assert "verify evidence: pass: artifact of" in out


def test_cli_errors_are_one_line_and_exit_2(
    home: DemoHome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(home, capsys, "promote", MODEL, "--env", "prod")
    assert (code, out) == (2, "")
    assert err == "error: bc has no active rollout in prod\n"

    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy:\n  canary:\n    steps: [{weight: 150}]\n")
    code, _, err = run(
        home, capsys, "start", MODEL, "--candidate", "2", "--env", "prod", "-f", str(bad)
    )
    assert code == 2
    assert err == f"error: {bad}: strategy.canary.steps[0].weight: must be 1..100, got 150\n"

    code, _, err = run(home, capsys, "start", MODEL, "--candidate", "99", "--env", "prod")
    assert code == 2
    assert err.startswith("error: model 'bc' version '99' not found")
    assert err.count("\n") == 1

    code, _, err = run(home, capsys, "status", MODEL)  # --env is required
    assert code == 2
    assert "--env" in err

    code, _, err = run(home, capsys, "start", MODEL, "--env", "prod")
    assert (code, err) == (2, "error: --candidate is required (or set it in the spec)\n")


HEAVY = ("rollout.manager", "rollout.cli.handlers", "mlflow", "scipy", "numpy", "pandas",
         "sqlalchemy", "fastapi", "pydantic")  # fmt: skip


@pytest.mark.parametrize("argv", [["--help"], ["status", "--help"], ["rollback", "--help"], []])
def test_help_loads_no_handler_and_nothing_heavy(argv: list[str]) -> None:
    probe = (
        "import json, sys\n"
        "from rollout.cli import main\n"
        f"code = main({argv!r})\n"
        f"print(json.dumps([code, sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    code, loaded = json.loads(done.stdout.splitlines()[-1])
    assert (code, loaded) == (0 if argv else 2, [])
    assert "usage: rollout" in done.stdout + done.stderr


def test_cli_up_help_is_delegated(home: DemoHome, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(home, capsys, "up", "--help")
    assert code == 0
    assert "usage: rollout up" in out


def test_up_names_a_port_in_use_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port ``rollout up`` needs is taken (another ``rollout up``, say): one line naming
    the option and the port, exit 2, and nothing made or started."""
    home = tmp_path / "home"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        free = [free_port(), free_port()]
        argv = ["--home", str(home), "up", "--port", str(free[0]), "--api-port", str(free[1])]
        assert main([*argv, "--metrics-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --metrics-port {port}: cannot listen on 127.0.0.1:{port} (")
    assert err.count("\n") == 1 and not home.exists()


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free() -> None:
    """Right after ``rollout up`` stopped, its ports' last connections wait in TIME_WAIT: the
    servers (SO_REUSEADDR) may listen there again, so the check must not refuse them."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: TIME_WAIT is on its port
        client.close()
    assert taken_port("127.0.0.1", {"--port": port}) is None


def test_manager_command_stops_on_sigterm(home: DemoHome) -> None:
    env = {**os.environ, **home.settings.env()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollout", "manager", "--interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 60
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while "manager running" not in line and time.time() < deadline:
            line = proc.stdout.readline()
        assert "manager running every 0.10s" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_verbs_are_audited_allowed_or_failed(
    home: DemoHome, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    assert run(home, capsys, "start", MODEL, "--candidate", v1, "--env", "prod")[0] == 0
    code, _, err = run(home, capsys, "promote", MODEL, "--env", "prod", "--actor", "mallory")
    assert code == 2 and "no active rollout" in err
    code, out, _ = run(
        home, capsys, "start", MODEL, "--candidate", v2, "--env", "prod", "--actor", "alice"
    )
    assert code == 0
    rollout_id = out.split(":")[0]
    assert run(home, capsys, "rollback", MODEL, "--env", "prod", "--actor", "bob")[0] == 0

    code, out, _ = run(home, capsys, "audit", MODEL, "--env", "prod", "--json")
    assert code == 0
    every = list(reversed(json.loads(out)))  # oldest first
    transitions = [r for r in every if r["detail"].get("kind") == "transition"]
    assert ("manager", "pending->verifying") in {(r["identity"], r["verb"]) for r in transitions}
    rows = [r for r in every if r not in transitions]  # the CLI's own rows
    assert [(r["verb"], r["identity"], r["outcome"], r["status_code"]) for r in rows[1:]] == [
        ("promote", "mallory", "failed", 2),
        ("start", "alice", "allowed", 0),
        ("rollback", "bob", "allowed", 0),
    ]
    assert all(r["detail"]["via"] == "store" for r in rows)
    assert {(r["address"], r["user_agent"]) for r in rows} == {
        (socket.gethostname(), f"rollout-cli (os user {getpass.getuser()})")
    }
    assert "no active rollout" in rows[1]["detail"]["error"]
    assert rows[2]["detail"]["rollout_id"] == rollout_id
    assert rows[3]["detail"]["version"] == v2
    code, out, _ = run(home, capsys, "audit", "--verify")
    assert code == 0 and "ok" in out
