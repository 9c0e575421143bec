"""A lower bound on the total-variation distance of two arms' output mixes, from one stream per
category.

Under randomised assignment each category's share difference ``d_k = c_k - b_k`` (canary's
share of outputs in category ``k`` minus the baseline's) has an augmented-IPW stream
(:class:`monitors.anytime.MeanDifference`, folded by ``rollout.summary.OutputSummary.add_mix``)
whose confidence sequence needs one stream's width where the two arms' own bounds add two. The
total-variation distance is ``TV = sum_k |d_k| / 2`` and, since the ``d_k`` sum to zero, at least
every ``|d_k|``: so ``max(max_k |d_k|_low, sum_k |d_k|_low / 2)`` is a lower bound of it whenever
every stream's bounds hold.

The streams come in the order their categories first appeared; stream ``i`` gets the share
``MIX_WEIGHTS[i]`` of ``alpha`` (three quarters to the first, which for two categories holds all
there is to know: the second is its mirror), split between its two sides because the side that
proves ``|d_k|`` is the one the data show. A union bound over the streams and sides keeps the
whole at ``alpha``. Only the first ``MIX_STREAMS_JUDGED`` are evaluated: the others' shares are
too small to prove anything the first ones do not, and leaving a bound unused never breaks it.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitors.anytime import MeanDifference

MIX_STREAMS_JUDGED = 6


def mix_weight(index: int) -> float:
    """The share of alpha of the stream that appeared ``index``-th (from 0): 3/4, then a
    quarter halved at each step (1/8, 1/16, ...), summing to at most 1."""
    return 0.75 if index == 0 else 0.25 * 2.0**-index


def tv_distance_low(streams: Sequence[MeanDifference], alpha: float, v_opt: float) -> float:
    """The lower bound of the total-variation distance the streams prove at ``alpha``."""
    lows = []
    for index, stream in enumerate(streams[:MIX_STREAMS_JUDGED]):
        if stream.count == 0:
            continue
        bounds = stream.bounds(alpha * mix_weight(index) / 2, v_opt)
        lows.append(max(0.0, bounds.low, -bounds.high))
    if not lows:
        return 0.0
    return min(1.0, max(max(lows), sum(lows) / 2))


__all__ = ["MIX_STREAMS_JUDGED", "mix_weight", "tv_distance_low"]
