"""The manager's MLflow limits stay in its own process: children started by `rollout up` or
the demo do not inherit them, unless the operator set them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIMITS = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
)

# In a fresh process: open the manager's registry, then start a child through the Supervisor
# of `rollout up`, which writes the MLflow settings it was given.
SCRIPT = """
import json, sys
from pathlib import Path
from rollout.registry import MlflowRegistry
from rollout.settings import Settings
from rollout.up import ProcessSpec, Supervisor

home = Path(sys.argv[1])
LIMITS = tuple(sys.argv[2:])
MlflowRegistry(f"sqlite:///{home / 'mlflow.db'}")
import os
own = {k: os.environ.get(k) for k in LIMITS}
settings = Settings.from_env({"ROLLOUT_HOME": str(home)})
child = Supervisor(settings, home / "logs").start(ProcessSpec("child", [
    sys.executable, "-c",
    "import json, os; print(json.dumps({k: os.environ.get(k) for k in " + repr(LIMITS) + "}))",
]))
child.wait(30)
print(json.dumps(own))
"""


def _run(tmp_path: Path, extra: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in LIMITS and k != "ROLLOUT_HOME"}
    env.update(extra)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), *LIMITS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    own = json.loads(out.strip().splitlines()[-1])
    child = json.loads((tmp_path / "logs" / "child.log").read_text().strip().splitlines()[-1])
    return own, child


@pytest.mark.parametrize("operator", [False, True], ids=["defaults", "operator-set"])
def test_the_registry_limits_are_not_inherited_unless_the_operator_set_them(
    tmp_path: Path, operator: bool
) -> None:
    extra = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "17"} if operator else {}
    own, child = _run(tmp_path, extra)
    assert own == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "17" if operator else "4",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    assert child == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "17" if operator else None,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": None,
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": None,
    }
