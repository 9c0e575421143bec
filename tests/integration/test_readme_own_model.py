"""The README's "Your own model, step by step", run as it is written.

The test takes the section's one fenced ``bash`` block out of README.md and runs it with bash in
a fresh directory (so ``.rollout/`` and ``mlruns/`` are new), with this virtualenv's ``bin/``
first on ``PATH`` and no ``ROLLOUT_*`` or ``MLFLOW_*`` variable set: real ``rollout up``
processes, MLflow's own ``log_model`` with a signature, the CLI, and ``rollout replay`` sending
the rows over HTTP to the router and their labels with the label writer's token. The one
change is the ports: ``8080`` becomes a free one, so the
test cannot collide with anything else on the machine, and the API ``rollout up`` also starts
gets a free ``--api-port`` instead of its default 8090 (and the manager a free
``--metrics-port`` instead of 9100). It passes when the block ends on its own
(``rollout status --watch`` returns once the rollout is no longer active) with version 2
promoted on evidence: the gates passed on labelled canary requests and ``@staging`` is v2.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollout.up import free_port

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Your own model, step by step"
BLOCK_TIMEOUT_S = 240.0  # a bound, not an expectation: the block takes about a minute


def own_model_block(readme: str) -> str:
    """The first fenced ``bash`` block of the section (ValueError if there is none)."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    if match is None:
        raise ValueError(f"no ```bash block in the README section {SECTION!r}")
    return match.group(1)


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a newcomer's shell: the virtualenv first on PATH, nothing set."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ROLLOUT_", "MLFLOW_", "PYTEST_"))
    }
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(tmp_path)
    return env


def test_block_is_about_ten_lines() -> None:
    lines = own_model_block(README.read_text()).strip().splitlines()
    assert len(lines) <= 10, lines
    text = "".join(lines)
    assert "8080" in lines[0] and "log_model" in text and "signature=" in text
    assert "rollout replay" in text and "--label" in text and "--watch" in lines[-1]


def test_readme_own_model_reaches_a_decision(tmp_path: Path) -> None:
    port = free_port()
    block = own_model_block(README.read_text()).replace("8080", str(port))
    ports = f"--api-port {free_port()} --metrics-port {free_port()}"
    block = block.replace(f"--port {port}", f"--port {port} {ports}", 1)
    assert "--api-port" in block, block
    env = clean_env(tmp_path)
    log = (tmp_path / "block.log").open("w+")
    started = time.monotonic()
    shell = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the block's background jobs share its process group
    )
    try:
        code = shell.wait(timeout=BLOCK_TIMEOUT_S)
        elapsed_s = time.monotonic() - started
        log.seek(0)
        output = log.read()
        assert code == 0, output[-4000:]
        status = subprocess.run(
            ["rollout", "status", "wine", "--env", "staging", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        _stop_group(shell)
        log.close()
    print(f"README block: first decision after {elapsed_s:.1f} s")
    state = json.loads(status.stdout)
    rollout = state["rollout"]
    assert (rollout["state"], rollout["candidate_version"]) == ("succeeded", "2"), rollout
    assert state["alias_version"] == "2"
    # promoted on evidence: the watch printed the step's gates passing on labelled requests
    assert "all steps passed" in output
    assert re.search(
        r"metrics: +http://\S+/metrics \(router\), http://\S+/metrics \(manager\)", output
    )
    assert re.search(r"quality: accuracy proven within what is allowed: .* on \d+ baseline", output)
    assert (tmp_path / "canary.yaml").exists() and (tmp_path / ".rollout" / "mlflow.db").exists()
    replayed = (tmp_path / "replay.log").read_text()  # its counts, a line a second
    assert re.search(r"replay: \d+/2000 requests .* [1-9]\d* labels accepted, 0 refused", replayed)


def _stop_group(shell: subprocess.Popen[bytes]) -> None:
    """Stop ``rollout up`` and the traffic the block left running (its own process group)."""
    try:
        os.killpg(shell.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        shell.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(shell.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(shell.pid, signal.SIGKILL)
