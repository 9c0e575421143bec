"""A rollout's stored drift reports, served by ``GET /v1/rollouts/{id}/drift-report``.

After a judged step window the manager writes its HTML drift report to
``<reports>/<rollout id>/step-<step>-<window start>.html`` (:meth:`rollout.evidence.Evidence.
report_path`). :func:`stored_report` finds the latest one of a rollout (the latest window start;
of one step when ``step`` is given). It lists only the rollout's own directory, takes only
names of that pattern, and returns only a regular file that resolves inside ``reports`` (a
symbolic link out of it is skipped): no request reads a path outside where reports are written.
:class:`NoDriftReport` (404) when there is none yet.
"""

from __future__ import annotations

import re
from pathlib import Path

from rollout.errors import NotFound

__all__ = ["NoDriftReport", "stored_report"]

NAME = re.compile(r"step-(\d{1,6})-(\d{1,12})\.html")


class NoDriftReport(NotFound):
    """The rollout has no drift report (of that step) yet."""


def stored_report(reports: Path, rollout_id: str, step: int | None = None) -> Path:
    """The path of the rollout's latest drift report (of step ``step``, counted from 1)."""
    root = reports.resolve()
    folder = root / rollout_id
    found: list[tuple[int, int, Path]] = []
    if folder.parent == root and folder.is_dir():
        for path in folder.iterdir():
            name = NAME.fullmatch(path.name)
            if name is None or (step is not None and int(name.group(1)) != step):
                continue
            real = path.resolve()
            if real.is_relative_to(root) and real.is_file():
                found.append((int(name.group(2)), int(name.group(1)), real))
    if not found:
        which = f" of step {step}" if step is not None else ""
        raise NoDriftReport(
            f"rollout {rollout_id} has no drift report{which} yet: one is written after each "
            "judged step window where baseline and canary both serve"
        )
    return max(found)[2]
