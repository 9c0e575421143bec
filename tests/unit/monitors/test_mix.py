"""The total-variation lower bound from per-category streams: its parts on two categories, and
its coverage by simulation at the edge of the null (three categories, a 10% split)."""

from __future__ import annotations

import numpy as np
import pytest

from monitors.anytime import ArmBatch, MeanDifference
from monitors.mix import MIX_STREAMS_JUDGED, mix_weight, tv_distance_low


def streams_of(
    rng: np.random.Generator, share: float, canary: list[float], baseline: list[float], batches: int
) -> list[MeanDifference]:
    """One stream per category, fed batches of 1,000 requests split at ``share``."""
    streams = [MeanDifference(0.0, 1.0, 0.1) for _ in canary]
    for _ in range(batches):
        n_c = int(rng.binomial(1000, share))
        c = rng.multinomial(n_c, canary)
        b = rng.multinomial(1000 - n_c, baseline)
        at = min(max(n_c / 1000, 0.1), 0.9)  # as the fold clamps it to the rollout's shares
        for k, stream in enumerate(streams):
            stream.add(at, ArmBatch(n_c, c[k], c[k]), ArmBatch(1000 - n_c, b[k], b[k]))
    return streams


def test_the_weights_sum_to_at_most_one_and_favour_the_first() -> None:
    weights = [mix_weight(i) for i in range(60)]
    assert sum(weights) <= 1.0 and weights[0] == 0.75 and weights[1] == 0.125
    assert sum(weights[:MIX_STREAMS_JUDGED]) < 1.0


def test_two_categories_are_judged_by_the_first_streams_bounds() -> None:
    rng = np.random.default_rng(3)
    streams = streams_of(rng, 0.5, [0.6, 0.4], [0.7, 0.3], 20)
    first = streams[0].bounds(0.01 * 0.75 / 2, 5000)
    assert first.high < 0  # the canary has fewer of the first category
    assert tv_distance_low(streams, 0.01, 5000) == pytest.approx(-first.high)
    assert tv_distance_low([], 0.01, 5000) == 0.0


def test_the_bound_exceeds_the_true_distance_in_at_most_alpha_of_runs() -> None:
    """Three categories, true TV 0.05; looks after every batch of 1,000 requests to 40,000."""
    rng = np.random.default_rng(11)
    canary, baseline, alpha, runs = [0.35, 0.45, 0.2], [0.30, 0.50, 0.2], 0.1, 200
    truth = 0.5 * sum(abs(c - b) for c, b in zip(canary, baseline, strict=True))
    crossed = 0
    for _ in range(runs):
        streams = [MeanDifference(0.0, 1.0, 0.1) for _ in canary]
        for _ in range(40):
            n_c = int(rng.binomial(1000, 0.1))
            c = rng.multinomial(n_c, canary)
            b = rng.multinomial(1000 - n_c, baseline)
            share = min(max(n_c / 1000, 0.1), 0.9)
            for k, stream in enumerate(streams):
                stream.add(share, ArmBatch(n_c, c[k], c[k]), ArmBatch(1000 - n_c, b[k], b[k]))
            if tv_distance_low(streams, alpha, 5000) > truth:
                crossed += 1
                break
    assert crossed / runs <= alpha


def test_a_moved_mix_is_proven_beyond_a_smaller_distance() -> None:
    rng = np.random.default_rng(5)
    streams = streams_of(rng, 0.1, [0.6, 0.4], [0.7, 0.3], 40)
    assert tv_distance_low(streams, 0.0125, 5000) > 0.05  # TV 0.1 on 4,000 canary outputs
