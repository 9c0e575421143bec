"""``router.server.main``: the command line the ``rollout router`` CLI delegates to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router.metrics import MULTIPROC_ENV
from router.server import build_parser, main, multiprocess_dir


def test_arguments_and_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.workers, args.environment) == ("127.0.0.1", 8080, 1, None)
    args = build_parser().parse_args(
        ["--host", "0.0.0.0", "--port", "9000", "--environment", "staging", "--workers", "2"]
    )
    assert (args.host, args.port, args.workers, args.environment) == (
        "0.0.0.0",
        9000,
        2,
        "staging",
    )


def test_a_bad_environment_variable_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.setenv("ROLLOUT_HOME", str(tmp_path))
    monkeypatch.setenv("ROLLOUT_PLAN_POLL_S", "often")
    assert main(["--port", "0"]) == 2
    assert "ROLLOUT_PLAN_POLL_S='often'" in capsys.readouterr().err


def test_a_multiprocess_dir_is_made_per_run_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_dir() as path:
        assert path.is_dir() and os.environ[MULTIPROC_ENV] == str(path)
    assert not path.exists() and MULTIPROC_ENV not in os.environ


def test_a_given_multiprocess_dir_loses_its_stale_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("kept")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with multiprocess_dir() as path:
        assert path == tmp_path
        assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]
    assert tmp_path.exists()
