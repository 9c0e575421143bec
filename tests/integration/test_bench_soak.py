"""``bench/soak.py`` on the tests' demo registry: the whole stack loses nothing under load.

Two routers, the manager and the API as processes on loopback over a copy of the demo's MLflow
registry and a SQLite store; 20 s of traffic through both routers with every answered
request's label posted back, while ``bc`` v2 is rolled out over v1 to its end. Every request is
answered with a 200, every answered request id has its prediction record in the store, every
accepted label is stored, and the canary succeeds. Marked ``soak`` (about 90 s on a busy
2-core machine, so not in the default run): ``pytest -m soak``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MODEL, DemoHome

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_a_20_s_soak_loses_no_record_and_no_label(demo_home: DemoHome, tmp_path: Path) -> None:
    shutil.copy(demo_home.settings.home / "mlflow.db", tmp_path / "mlflow.db")
    argv = [
        sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "20", "--grace", "120",
        "--registry-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--artifact-root", demo_home.settings.artifact_root,
        "--model", MODEL,
        "--baseline", demo_home.versions["baseline"],
        "--candidate", demo_home.versions["better"],
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=540, check=False)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["sent"] >= 200, result  # both routers served steady traffic
    assert result["failed"] == 0, result
    assert result["lost_records"] == 0, result
    assert result["labels_sent"] >= 0.9 * result["sent"], result
    assert result["lost_labels"] == 0, result
    assert result["outcome"] == "succeeded", (result, done.stderr[-3000:])
    assert set(result["by_arm"]) == {"baseline", "canary"}, result
    assert result["p99_ms"] > 0
    assert done.returncode == 0, done.stderr[-3000:]
