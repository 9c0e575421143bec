"""``rollout status --watch`` as a real process (issue 12, item 8): on a terminal (a pty) it
redraws in place and returns when the rollout ends; through the API (``--api``, a real API on
loopback) with its output in a pipe it appends plain snapshots and Ctrl-C ends it cleanly.

The rollout is real (the demo registry, a SQLite store): v2 as a canary over v1 at 10%, with
prediction records written the way a router writes them, so the view has requests per arm and
a gate's bounds to show. The manager loop does not run, so the rollout holds its step until
the test aborts it.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from conftest import MODEL, DemoHome, LogWriter, logged, serving
from rollout.auth import Token
from rollout.cli.live import CLEAR
from rollout.manager import Manager
from rollout.spec import load_spec

READ_S = 60.0  # the longest a test waits for the watcher's output


@dataclass
class Canary:
    manager: Manager
    rollout_id: str
    v1: str
    v2: str


@pytest.fixture
def canary(home: DemoHome) -> Iterator[Canary]:
    """v2 at 10% over v1 in prod, with 40 canary and 360 baseline requests logged."""
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager = Manager(home.settings)
    spec = load_spec(
        "strategy: {canary: {steps: [{weight: 10, min_requests: 1000}, {weight: 100}]}}\n"
        "analysis: {gates: [error_rate]}\n"
    )
    try:
        manager.start(MODEL, v1, "prod", None, "alice")
        rollout_id = manager.start(MODEL, v2, "prod", spec, "alice")
        records = [logged(rollout_id, "canary", v2, 1) for _ in range(40)]
        records += [logged(rollout_id, "baseline", v1, 1) for _ in range(360)]
        LogWriter(manager.engine).write(records)
        yield Canary(manager, rollout_id, v1, v2)
    finally:
        manager.close()


def read_until(fd: int, seen: bytearray, done: Callable[[bytes], bool]) -> None:
    """Read ``fd`` into ``seen`` until ``done(seen)`` or its end; fail after READ_S."""
    deadline = time.monotonic() + READ_S
    while not done(bytes(seen)):
        left = deadline - time.monotonic()
        assert left > 0, f"waited {READ_S:g} s; read so far: {bytes(seen)[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty's end once the process closed it
                return
            if not chunk:
                return
            seen += chunk


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")}
    return {**env, **extra}


def test_on_a_terminal_the_view_is_redrawn_in_place_until_the_rollout_ends(
    home: DemoHome, canary: Canary
) -> None:
    s = home.settings
    master, slave = pty.openpty()
    argv = [
        sys.executable, "-m", "rollout", "--home", str(s.home),
        "--registry-uri", s.registry_uri, "--store-url", s.store_url,
        "status", MODEL, "--env", "prod", "--watch", "--interval", "0.5",
    ]  # fmt: skip
    env = child_env({"ROLLOUT_ENVIRONMENTS_FILE": str(s.environments_file)})
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    seen = bytearray()
    try:
        # redrawn twice: the screen between the 2nd and the 3rd clear is whole (a pty hands a
        # screen over in pieces, so the newest one may still be partly unread)
        read_until(master, seen, lambda out: out.count(CLEAR.encode()) >= 3)
        screen = bytes(seen).decode().split(CLEAR)[2]
        assert screen.startswith(
            f"{MODEL} in prod: rollout {canary.rollout_id} progressing, v{canary.v2} over "
            f"v{canary.v1}, started by alice\r\n"
        )
        assert "  steps: 1) 10% now  2) 100%\r\n" in screen
        assert "  traffic: baseline v1 90%, canary v2 10% (plan generation" in screen
        assert (
            "  requests in step 1: canary 40 of 1,000 needed (4%), baseline 360; time: " in screen
        )
        assert " s in, no wait" in screen  # the step's elapsed time, on a terminal only
        gate_row = next(line for line in screen.splitlines() if "error_rate" in line)
        assert "to" in gate_row and gate_row.split()[-3:] == ["360", "40", "inconclusive"]
        canary.manager.abort(MODEL, "prod", "bob", "test over")
        read_until(master, seen, lambda out: b"aborted" in out.split(CLEAR.encode())[-1])
        assert proc.wait(timeout=READ_S) == 0  # the rollout ended: so did the watch
        read_until(master, seen, lambda out: False)  # the rest, up to the pty's end
        final = bytes(seen).decode().split(CLEAR)[-1]
        assert f"rollout {canary.rollout_id}: aborted" in final
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_through_the_api_a_pipe_gets_plain_snapshots_and_ctrl_c_ends_it(
    home: DemoHome, canary: Canary
) -> None:
    from rollout.api import create_app

    tokens = {hashlib.sha256(b"viewer-secret").hexdigest(): Token("vic", ("viewer",))}
    with serving(create_app(canary.manager, tokens)) as client:
        argv = [
            sys.executable, "-m", "rollout", "--api", str(client.base_url),
            "status", MODEL, "--env", "prod", "--watch", "--interval", "0.5",
        ]  # fmt: skip
        env = child_env({"ROLLOUT_TOKEN": "viewer-secret"})
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stderr is not None
        seen = bytearray()
        try:
            read_until(proc.stdout.fileno(), seen, lambda out: b"error_rate" in out)
            text = bytes(seen).decode()
            assert text, proc.stderr.read().decode()
            assert CLEAR not in text  # not a terminal: nothing to redraw
            assert text.startswith(f"{MODEL} in prod: rollout {canary.rollout_id} progressing")
            assert "  requests in step 1: canary 40 of 1,000 needed (4%), baseline 360; " in text
            assert " s in, " not in text  # no clock in a snapshot: only changes print
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=READ_S) == 130
            rest = proc.stdout.read()
            assert bytes(seen + rest).decode().count(f"{MODEL} in prod") == 1  # no change
            assert b"Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
