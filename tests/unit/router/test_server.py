"""``router.server.main``: the command line the ``rollout router`` CLI delegates to."""

from __future__ import annotations

import pytest

from router.server import build_parser, main


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
