"""The import rules between the project's packages (docs/architecture.md, "The rule that keeps
them apart"): the router imports nothing from ``rollout`` or ``monitors``; ``contract`` nothing
from any of them; ``monitors`` nothing of ours but itself; and in ``rollout`` only the API
imports the dashboard (``rollout.web``), so the manager never loads it.

Read from the source (every ``import``, also one inside a function), and for the router also
from what a fresh interpreter loads: no scipy in a router process."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("contract", "monitors", "rollout", "router")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ours only matter here)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def offenders(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name.startswith(allowed):
            continue
        bad = sorted(
            m for m in imports(path) if m.split(".")[0] in forbidden or m.startswith(forbidden)
        )
        if bad:
            out[name] = bad
    return out


@pytest.mark.parametrize(
    ("package", "forbidden", "allowed"),
    [
        ("router", ("rollout", "monitors"), ()),
        ("contract", ("rollout", "router", "monitors"), ()),
        ("monitors", ("rollout", "router", "contract"), ()),
        ("rollout", ("rollout.web",), ("rollout/web/", "rollout/api.py")),
    ],
)
def test_a_package_imports_nothing_above_it(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    assert imports(ROOT / "rollout" / "manager.py")  # the reader sees imports at all
    assert offenders(package, forbidden, allowed) == {}


def test_the_reader_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from rollout.web.sample import wilson\n")
    assert "rollout.web.sample" in imports(source)


def test_a_router_process_loads_no_scipy_and_nothing_of_the_manager() -> None:
    probe = "import json, sys\nimport router.app\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    modules = json.loads(done.stdout.splitlines()[-1])
    assert "router.app" in modules and "contract.plans" in modules
    heavy = ("rollout", "monitors", "scipy.stats", "evidently")
    assert [m for m in modules if m.split(".")[0] in heavy or m.startswith(heavy)] == []
