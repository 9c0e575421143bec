"""docs/architecture.md stays true: its lifecycle table is the code's, the files it names exist,
and nothing in the repository points at design notes that are not in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from rollout.machine import TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_the_lifecycle_table_is_the_transition_table() -> None:
    rows = re.findall(
        r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \| (.*?) \|$", ARCHITECTURE.read_text(), re.M
    )
    documented = {
        (state, event): (to, tuple(re.findall(r"`(\w+)`", effects)))
        for state, event, to, effects in rows
    }
    actual = {key: (rule.to_state, rule.effects) for key, rule in TRANSITIONS.items()}
    assert documented == actual


def test_every_file_the_architecture_names_exists() -> None:
    named = set(
        re.findall(
            r"`((?:contract|rollout|router|monitors|tests|docs)/[\w/.]*)`", ARCHITECTURE.read_text()
        )
    )
    assert len(named) > 30
    missing = sorted(path for path in named if not (ROOT / path.split()[0]).exists())
    assert missing == []


def test_nothing_points_at_design_notes_outside_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = "DESIGN" + ".md"
    pointing = [
        name
        for name in files
        if name.endswith((".py", ".md", ".yaml", ".toml", ".ipynb", ".sql"))
        and outside in (ROOT / name).read_text(errors="replace")
    ]
    assert pointing == []
