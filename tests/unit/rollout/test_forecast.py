"""The forecast of how many canary requests a step needs: the judge on an average window."""

from __future__ import annotations

from rollout.forecast import BaseRates, expected_window, requests_to_pass
from rollout.judge import Look, combine, judge
from rollout.spec import default_spec, load_spec

STEPS = {"canary": {"steps": [{"weight": 10}, {"weight": 100}]}}


def test_the_forecast_is_where_the_average_window_starts_to_pass() -> None:
    analysis = default_spec().analysis
    needed = requests_to_pass(analysis, 0.1, 0.1)
    assert needed is not None and 5_000 < needed < 60_000
    rates = BaseRates()
    at = combine(judge(Look(expected_window(needed, 0.1, 0.1, rates), True), analysis))
    before = round(needed / 1.05)
    sooner = combine(judge(Look(expected_window(before, 0.1, 0.1, rates), True), analysis))
    assert (at, sooner) == ("pass", "inconclusive")


def test_looser_margins_and_a_wider_split_decide_sooner() -> None:
    strict = default_spec().analysis
    loose = load_spec(
        {
            "strategy": STEPS,
            "analysis": {
                "gates": [
                    {"error_rate": {"max_ratio": 2.0}},
                    {"latency": {"max_ratio": 1.5}},
                    {"quality": {"metric": "accuracy", "max_decrease": 0.03}},
                ]
            },
        }
    ).analysis
    strict_n = requests_to_pass(strict, 0.1, 0.1)
    loose_n = requests_to_pass(loose, 0.1, 0.1)
    assert strict_n is not None and loose_n is not None and loose_n < strict_n / 3
    rare = requests_to_pass(strict, 0.1, 0.1, BaseRates(error_rate=0.001))
    assert rare is not None and rare > strict_n  # rare errors take longer to prove within


def test_nothing_to_forecast_without_blocking_gates() -> None:
    none = load_spec({"strategy": STEPS, "analysis": {"gates": "none"}}).analysis
    assert requests_to_pass(none, 0.1, 0.1) is None
    advisory = load_spec({"strategy": STEPS, "analysis": {"gates": ["output_drift"]}}).analysis
    assert requests_to_pass(advisory, 0.1, 0.1) is None
