"""The notebooks run top to bottom, each alone on a fresh ROLLOUT_HOME, and are kept without
outputs in git.

Each notebook starts ``rollout up`` itself and uses only public entry points (MLflow's own
``log_model``, the ``rollout`` CLI and HTTP API, HTTP to the router); the test executes it with
nbclient and checks what it printed: ``01_quickstart`` ends on a promoted canary,
``02_review_drift`` on a rolled back one with its evidence drawn. A notebook that fails halfway
leaves ``rollout up`` running: the test then stops every process started with its home.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300
# what each notebook must print on the way: the decision it reaches, on evidence
EXPECTED = {
    "01_quickstart.ipynb": [
        "initial release of quickstart v1 in prod",
        "waiting for approval by someone other than",
        "version 2 promoted, approved by bob",
        "rollout up exited with 0",
    ],
    "02_review_drift.ipynb": [
        "rolled_back on failed gates",
        "looks of",
        "drift report:",
        "rollout up exited with 0",
    ],
}


def test_notebooks_are_the_expected_ones() -> None:
    assert [p.name for p in NOTEBOOKS] == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert [c.get("outputs") for c in code if c.get("outputs")] == []
    assert [c.get("execution_count") for c in code if c.get("execution_count")] == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("ROLLOUT_HOME", str(home))
    for name in [
        n for n in os.environ if n.startswith(("ROLLOUT_", "MLFLOW_")) and n != "ROLLOUT_HOME"
    ]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    notebook = nbformat.read(path, as_version=4)
    try:
        NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        stopped = stop_processes_of(home)
    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert stopped == [], f"the notebook left processes running: {stopped}"
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    missing = [line for line in EXPECTED[path.name] if line not in text]
    assert missing == [], text[-3000:]
    assert (home / "mlflow.db").exists() and (home / "rollout.db").exists()
    if path.name == "02_review_drift.ipynb":
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) >= 2  # the outputs per arm, and the confidence sequences


def stop_processes_of(home: Path) -> list[int]:
    """SIGTERM every ``rollout`` process whose environment names ``home`` (what ``rollout up``
    started from the notebook); return their pids (empty when the notebook stopped them)."""
    marker = f"ROLLOUT_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in environ and b"rollout" in argv and b"ipykernel" not in argv:
            pids.append(int(entry.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    return pids
