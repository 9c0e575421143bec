"""Plots of a rollout's evidence: every gate's anytime-valid bounds against canary requests.

One panel per gate: the band between the bounds at each kept look, the estimate, the margin
(dashed) and a mark where the verdict changed. A fail is a band wholly beyond the margin, a
pass one wholly within it (:mod:`rollout.judge`). matplotlib (a dependency of MLflow) is
imported when a plot is drawn, never by the CLI's other commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rollout.store.looks import LookRecord

COLOURS = {"pass": "#2a9d55", "fail": "#c0392b", "inconclusive": "#7f8c8d"}


def plot_looks(looks: Sequence[LookRecord], path: Path, title: str) -> Path:
    """Draw the kept looks to ``path`` (PNG or SVG, by its suffix); returns ``path``."""
    if not looks:
        raise ValueError("no looks kept for this rollout yet: nothing to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gates = list(dict.fromkeys(gate.gate for look in looks for gate in look.gates))
    figure, axes = plt.subplots(
        len(gates), 1, figsize=(8, 2.6 * len(gates)), sharex=True, squeeze=False
    )
    for axis, name in zip(axes[:, 0], gates, strict=True):
        points = [(look, gate) for look in looks for gate in look.gates if gate.gate == name]
        x = [look.n_canary for look, _ in points]
        estimate = [_or_nan(gate.estimate) for _, gate in points]
        # a bound that does not exist yet (infinite) is drawn to the panel's edge
        finite = [
            v
            for _, gate in points
            for v in (gate.low, gate.high, gate.estimate, gate.threshold)
            if v is not None
        ]
        top, bottom = (max(finite), min(finite)) if finite else (1.0, 0.0)
        pad = 0.1 * (top - bottom or 1.0)
        low = [bottom - pad if gate.low is None else gate.low for _, gate in points]
        high = [top + pad if gate.high is None else gate.high for _, gate in points]
        axis.fill_between(x, low, high, step="post", alpha=0.25, label="anytime-valid bounds")
        axis.step(x, estimate, where="post", linewidth=1, label="estimate")
        thresholds = {gate.threshold for _, gate in points if gate.threshold is not None}
        for threshold in thresholds:
            axis.axhline(threshold, linestyle="--", color="black", linewidth=1, label="margin")
        previous = None
        for (look, gate), value in zip(points, estimate, strict=True):
            if gate.verdict != previous:
                axis.plot(look.n_canary, value, "o", color=COLOURS.get(gate.verdict, "black"))
                axis.annotate(
                    gate.verdict, (look.n_canary, value), fontsize=7, xytext=(3, 3),
                    textcoords="offset points",
                )  # fmt: skip
                previous = gate.verdict
        blocking = points[-1][1].blocking
        axis.set_ylim(bottom - pad, top + pad)
        axis.set_title(f"{name} ({'blocking' if blocking else 'advisory'})", fontsize=9)
        axis.grid(alpha=0.3)
    steps = sorted({look.step_index for look in looks})
    for step in steps[1:]:
        first = min(look.n_canary for look in looks if look.step_index == step)
        for axis in axes[:, 0]:
            axis.axvline(first, color="grey", linewidth=0.8, linestyle=":")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("canary requests in the judged window")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


__all__ = ["plot_looks"]
