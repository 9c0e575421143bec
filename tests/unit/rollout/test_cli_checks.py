"""The CLI's refusals and the live view's loop, one rule at a time (rollout/cli/checks.py,
rollout/cli/live.py, Environments.check); the real processes are in
tests/integration/test_cli_live.py and test_cli_refusals.py."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from rollout.cli import build_parser
from rollout.cli.checks import missing_home, unknown_environments
from rollout.cli.live import CLEAR, INTERRUPTED, watch
from rollout.environments import Environments, UnknownEnvironment
from rollout.queries import Status
from rollout.settings import Settings


def test_check_names_the_field_the_order_and_the_closest_name() -> None:
    envs = Environments()
    assert envs.check("prod").approval_required
    with pytest.raises(UnknownEnvironment) as refused:
        envs.check("prd", "spec.environment")
    assert str(refused.value) == (
        "spec.environment: 'prd' is not a configured environment: expected one of dev, staging, "
        "prod (the default order; configure it in $ROLLOUT_HOME/environments.yaml); "
        "did you mean 'prod'?"
    )
    with pytest.raises(UnknownEnvironment, match=r"\(as given to the manager\)$"):
        Environments.of(["qa", "live"]).check("sandbox")  # nothing close: no suggestion


def test_a_missing_home_is_refused_only_when_something_lives_in_it(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    embedded = Settings.from_env({}, home=gone)
    message = missing_home(embedded, "from --home")
    assert message is not None
    assert message.startswith(f"no data directory at {gone} (from --home); the registry and ")
    servers = Settings.from_env(
        {}, home=gone, registry_uri="http://mlflow:5000", store_url="postgresql://db/rollout"
    )
    assert missing_home(servers, "from --home") is None  # nothing would be made there
    half = Settings.from_env({}, home=gone, store_url="postgresql://db/rollout")
    assert "the registry would be made empty" in (missing_home(half, "x") or "")
    assert missing_home(Settings.from_env({}, home=tmp_path), "x") is None
    assert not gone.exists()


def test_every_environment_a_token_names_is_checked(tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path)
    ok = argparse.Namespace(env=["dev", "prod"])
    assert unknown_environments(ok, settings) is None
    bad = argparse.Namespace(env=["dev", "stagng"])
    assert (unknown_environments(bad, settings) or "").endswith("did you mean 'staging'?")
    assert unknown_environments(argparse.Namespace(env=None), settings) is None


@pytest.mark.parametrize("interval", ["0.1", "61", "nan", "soon"])
def test_the_watch_interval_is_bounded(interval: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["status", "bc", "--env", "prod", "--watch", "--interval", interval])
    assert exited.value.code == 2
    assert "argument --interval: expected seconds" in capsys.readouterr().err
    args = parser.parse_args(["status", "bc", "--env", "prod", "--interval", "0.5"])
    assert args.interval == 0.5


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


NOTHING = Status("bc", "prod", None, None, None)


def test_a_watch_with_no_active_rollout_prints_once_and_returns() -> None:
    reads: list[float] = []
    out = io.StringIO()
    code = watch(lambda: NOTHING, as_json=False, interval_s=0.5, out=out, wait=reads.append)
    assert code == 0
    assert out.getvalue() == "bc in prod\n  plan: none (never released here)\n" + (
        "  alias @prod: not set\n  rollout: none\n"
    )
    assert reads == []  # not active: no second look


def test_on_a_terminal_each_frame_clears_the_screen_first() -> None:
    out = Terminal()
    assert watch(lambda: NOTHING, as_json=False, interval_s=0.5, out=out) == 0
    assert out.getvalue().startswith(CLEAR + "bc in prod\n")
    as_json = Terminal()
    assert watch(lambda: NOTHING, as_json=True, interval_s=0.5, out=as_json) == 0
    assert as_json.getvalue().startswith('{"alias_version": null')  # JSON is never redrawn


def test_ctrl_c_ends_the_watch_cleanly_with_130() -> None:
    def interrupted() -> Status:
        raise KeyboardInterrupt

    out = io.StringIO()
    assert watch(interrupted, as_json=False, interval_s=0.5, out=out) == INTERRUPTED == 130
    assert out.getvalue() == "\n"  # the prompt starts on a line of its own
