"""The rollout page's pictures, drawn by matplotlib on the server as inline SVG.

- :func:`gates_svg`: every gate's effect with its confidence sequence over the looks against
  the margin (:func:`rollout.plots.plot_looks`, the CLI's own plot);
- :func:`traffic_svg`: the canary's weight and the requests per arm over time, from the kept
  looks (their time and counts) and the spec's steps;
- :func:`distributions_svg`: baseline and canary histograms of the outputs and of the most
  drifted features, from a bounded sample;
- :func:`arms_svg`: error rate and latency quantiles per arm with their 95% intervals.

Each returns the ``<svg>`` element alone (no XML prologue), text kept as text, so a page can
embed it; they take what to draw, never a query.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from rollout.plots import plot_looks
from rollout.store.looks import LookRecord
from rollout.web.sample import ArmStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ARM_COLOURS = {"baseline": "#1f77b4", "canary": "#ff7f0e"}


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    return plt


def _inline(svg: str) -> str:
    return svg[svg.index("<svg") :]


def _svg(figure: Figure) -> str:
    out = io.StringIO()
    figure.tight_layout()
    figure.savefig(out, format="svg")
    _pyplot().close(figure)
    return _inline(out.getvalue())


def gates_svg(looks: Sequence[LookRecord], title: str) -> str:
    _pyplot()
    with tempfile.TemporaryDirectory(prefix="rollout-ui-") as scratch:
        path = plot_looks(looks, Path(scratch) / "looks.svg", title)
        return _inline(path.read_text())


def traffic_svg(looks: Sequence[LookRecord], step_weights_pct: Sequence[int]) -> str:
    plt = _pyplot()
    figure, (weight, counts) = plt.subplots(2, 1, figsize=(8, 4), sharex=True)
    start = looks[0].ts
    minutes = [(look.ts - start) / 60 for look in looks]
    weight.step(
        minutes,
        [step_weights_pct[min(look.step_index, len(step_weights_pct) - 1)] for look in looks],
        where="post",
        color=ARM_COLOURS["canary"],
    )
    weight.set_ylabel("canary weight %")
    weight.set_ylim(0, 105)
    counts.plot(minutes, [look.n_baseline for look in looks], label="baseline", marker=".")
    counts.plot(minutes, [look.n_canary for look in looks], label="canary", marker=".")
    counts.set_ylabel("requests in window")
    counts.set_xlabel("minutes since the first kept look")
    counts.legend(fontsize=7)
    for axis in (weight, counts):
        axis.grid(alpha=0.3)
    return _svg(figure)


def distributions_svg(panels: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> str:
    """One histogram panel per (title, baseline values, canary values)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels) + 1, 2.8), squeeze=False)
    for axis, (title, baseline, canary) in zip(axes[0], panels, strict=True):
        both = [*baseline, *canary]
        bins = 20 if len({*both}) > 20 else max(1, len({*both}))
        lo, hi = (min(both), max(both)) if both else (0.0, 1.0)
        for arm, values in (("baseline", baseline), ("canary", canary)):
            if values:
                axis.hist(
                    values, bins=bins, range=(lo, hi if hi > lo else lo + 1), density=True,
                    alpha=0.5, label=f"{arm} (n={len(values)})", color=ARM_COLOURS[arm],
                )  # fmt: skip
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=6)
    return _svg(figure)


def arms_svg(arms: Sequence[ArmStats]) -> str:
    plt = _pyplot()
    quantiles = sorted({q for arm in arms for q in arm.latency_ms})
    figure, axes = plt.subplots(1, 1 + len(quantiles), figsize=(8, 2.8), squeeze=False)
    titles = ["error rate", *(f"latency p{round(q * 100)} (ms)" for q in quantiles)]
    for i, (axis, title) in enumerate(zip(axes[0], titles, strict=True)):
        for x, arm in enumerate(arms):
            value = arm.error_rate if i == 0 else arm.latency_ms.get(quantiles[i - 1])
            if value is None:
                continue
            axis.errorbar(
                [x], [value.estimate],
                yerr=[[value.estimate - value.low], [value.high - value.estimate]],
                fmt="o", capsize=4, color=ARM_COLOURS.get(arm.arm, "black"),
            )  # fmt: skip
        axis.set_xticks(range(len(arms)), [arm.arm for arm in arms], fontsize=7)
        axis.set_xlim(-0.5, len(arms) - 0.5)
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)
    return _svg(figure)
