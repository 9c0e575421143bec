"""``rollout demo``, the main job, end to end as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rollout.demo.run import demo_succeeded
from rollout.manager import Manager
from rollout.settings import Settings

VERSIONS = {"baseline": "1", "better": "2", "broken": "3"}


@pytest.mark.timeout(600)  # about 90 s; a busy machine serves the demo at a third of the rate
def test_demo_promotes_the_better_version_and_rolls_back_the_broken_one(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ROLLOUT_HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for key in ("ROLLOUT_REGISTRY_URI", "ROLLOUT_STORE_URL", "ROLLOUT_ARTIFACT_ROOT"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "rollout", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    for progress in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert progress in out
    assert "demo OK" in out
    # Its labels come from the home's label writer, for ids the router signed: none refused.
    fed = re.search(r"(\d+) labels fed back \((\d+) refused\)", out)
    assert fed is not None and int(fed[1]) > 0 and fed[2] == "0", out[-2000:]
    # Evidence tables name each gate with its verdict; the broken canary fails on evidence.
    assert "quality       aipw_difference" in out
    assert "progressing → rolling_back" in out
    # prod requires an approval by someone other than the starter: a second identity gives it
    assert "prod requires an approval by someone other than demo: bob approves v2" in out

    # The store agrees with what was printed.
    manager = Manager(Settings.resolve(home=tmp_path / "demo"))
    try:
        releases = {r.version: r for r in manager.history("breast-cancer", "prod")}
        assert releases["1"].kind == "initial"
        assert releases["2"].outcome == "succeeded" and releases["2"].previous_version == "1"
        assert (releases["2"].started_by, releases["2"].approved_by) == ("demo", "bob")
        assert releases["3"].outcome == "rolled_back"
        assert releases["3"].evidence is not None
        for release in releases.values():
            assert release.artifact_digest and release.artifact_digest.startswith("sha256:")
            assert release.run_id and release.config_hash
        # The judged steps link an Evidently drift report of features and outputs.
        rolled_back = releases["3"].rollout_id
        assert rolled_back is not None
        (judged,) = [e for e in manager.events(rolled_back) if e.to_state == "rolling_back"]
        assert judged.evidence is not None
        report = Path(judged.evidence["report"])
        html = report.read_text()
        assert report.parent.name == rolled_back and "<html" in html.lower()
        assert "worst area" in html and "output" in html
        plan = manager.plans.get("prod", "breast-cancer")
        assert plan is not None
        assert (plan.baseline_version, plan.canary_version) == ("2", None)
        assert manager.registry.alias_version("breast-cancer", "prod") == "2"
    finally:
        manager.close()


def test_demo_verdict_requires_both_outcomes() -> None:
    good = {"better": "succeeded", "broken": "rolled_back"}
    assert demo_succeeded(good, "2", VERSIONS, 0)
    assert not demo_succeeded({**good, "broken": "succeeded"}, "2", VERSIONS, 0)
    assert not demo_succeeded({**good, "better": "rolled_back"}, "2", VERSIONS, 0)
    assert not demo_succeeded(good, "3", VERSIONS, 0)
    assert not demo_succeeded(good, "2", VERSIONS, 1)
    assert not demo_succeeded({"better": "succeeded"}, "2", VERSIONS, 0)
