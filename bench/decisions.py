"""Decision benchmark: whole rollouts through the manager's own code, against a known truth.

``python bench/decisions.py [--quick] [--runs-aa 1000] [--runs 400] [--workers 2]``

Each run is one rollout of ``DEFAULT_SPEC`` (or of a spec whose output drift blocks at a stated
``delta``), its first step at 10% or 50%. Requests are simulated at the truth of the scenario
and folded into a :class:`~rollout.summary.WindowSummary` the way the store's fold does
(:func:`fold_look`; ``tests/integration/test_bench_decisions.py`` proves that folding the same
rows through the SQL prediction log gives the same summary). Every 250 canary requests the run
looks as the manager does: :func:`rollout.analysis.analyse` on the window (at the 100% step,
every 2,500 requests, :func:`rollout.analysis.analyse_alone`: the candidate's SLO and its
history), then
:func:`rollout.machine.decide` (floors, ``max_requests``, the transition table); it follows the
decision until the rollout is promoted, rolled back or paused. Labels come for 80% of requests,
each after a delay (exponential, mean 2,000 requests), and are folded in the order they arrive.

Scenarios (``DEFAULT_SPEC``, first step at 10% and at 50%): A/A; error rate 1% → 2%; error
rate 0.1% → 0.3%; accuracy -3 points; p95 latency +30%; a *better* candidate (accuracy +2
points, its class mix moved by 5 points) that should be promoted. A/A with sticky keys and users
who differ (10% of users fail 11 times as often; every request of a user goes to the same arm).
A drift-blocking spec (output drift with ``delta`` 0.05): A/A, numeric outputs shifted by 0.2
sd, the class mix moved by 10 points.

For each detection scenario ``oracle_fixed_n`` is the canary requests one fixed-horizon test of
the same hypothesis and margin needs for 80% power at the alpha the procedure gives that gate,
knowing the effect (normal approximations). ``naive_false_rollback_rate`` judges the A/A runs'
windows at every look with fixed-horizon tests (two-proportion z on errors and on accuracy,
chi-square on the outputs, Mann-Whitney on latency; each at alpha / 4), as Kayenta does.

Prints progress to stderr, a table, and last one JSON line. ``--quick``: 200 A/A runs at 10%
(fixed seed); exits 1 at 19 or more false rollbacks (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitors import _normal as normal
from monitors._categories import pearson_chi2
from monitors._proportions import two_proportion_z
from monitors.names import ARMS, Arm
from monitors.streaming import mann_whitney_counts
from rollout.analysis import analyse, analyse_alone
from rollout.forecast import BaseRates, requests_to_pass
from rollout.judge import blocking, gate_alpha
from rollout.lifecycle import RolloutState, Step
from rollout.machine import decide
from rollout.spec import DEFAULT_SPEC, RolloutSpec, load_spec
from rollout.summary import GroupCounts, LabelSummary, WindowSummary

LOOK_CANARY = 250  # canary requests between looks while the arms split
# Requests between looks at 100%: the manager looks on a clock (every `interval_s`), so once the
# candidate serves alone a look holds all of an interval's traffic: here the requests of a look
# at a 10% step.
LOOK_ALONE = 2_500
LABEL_SHARE = 0.8  # requests that ever get a label
LABEL_DELAY = 2_000.0  # mean delay of a label, in requests served meanwhile
RATE = 1_000.0  # requests per second (the clock of the state machine; floors are counts)
USERS = 20_000  # the sticky scenario's users
QUICK_RUNS, QUICK_LIMIT = 200, 19

DRIFT_SPEC_GATES = [
    "error_rate",
    "latency",
    {"output_drift": {"method": "auto", "delta": 0.05}},
]


@dataclass(frozen=True)
class World:
    """The truth of a scenario: each arm's error rate, accuracy, class mix, latency scale."""

    error: tuple[float, float] = (0.01, 0.01)  # baseline, canary
    accuracy: tuple[float, float] = (0.9, 0.9)
    positive: tuple[float, float] = (0.3, 0.3)  # share of class 1 among the outputs
    latency_scale: float = 1.0  # the canary's latencies are the baseline's times this
    numeric_shift: float | None = None  # numeric outputs N(shift, 1) for the canary, no labels
    sticky_users: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    world: World
    first_weight: int
    runs: int
    expect: str  # "aa", "detect" or "promote"
    drift_spec: bool = False


def spec_for(scenario: Scenario) -> RolloutSpec:
    document: dict[str, Any] = json.loads(json.dumps(DEFAULT_SPEC))
    document["strategy"]["canary"]["steps"][0]["weight"] = scenario.first_weight
    if scenario.first_weight >= 50:  # 50% first: then 100%
        document["strategy"]["canary"]["steps"].pop(1)
    if scenario.drift_spec:
        document["analysis"]["gates"] = DRIFT_SPEC_GATES
    return load_spec(document)


def scenarios(runs_aa: int, runs: int) -> list[Scenario]:
    worlds: list[tuple[str, World, str]] = [
        ("error_1_to_2pct", World(error=(0.01, 0.02)), "detect"),
        ("error_0.1_to_0.3pct", World(error=(0.001, 0.003)), "detect"),
        ("accuracy_minus_3pts", World(accuracy=(0.9, 0.87)), "detect"),
        ("latency_p95_plus_30pct", World(latency_scale=1.3), "detect"),
        ("better", World(accuracy=(0.9, 0.92), positive=(0.3, 0.35)), "promote"),
    ]
    out: list[Scenario] = []
    for weight in (10, 50):
        out.append(Scenario(f"aa_{weight}pct", World(), weight, runs_aa, "aa"))
        out += [Scenario(f"{name}_{weight}pct", w, weight, runs, kind) for name, w, kind in worlds]
    drift = [
        ("aa_drift_spec_10pct", World(), "aa"),
        ("numeric_shift_0.2sd_10pct", World(numeric_shift=0.2), "detect"),
        ("category_mix_shift_10pct", World(positive=(0.3, 0.4)), "detect"),
    ]
    out.append(Scenario("aa_sticky_users_10pct", World(sticky_users=True), 10, runs, "aa"))
    out += [Scenario(name, w, 10, runs, kind, drift_spec=True) for name, w, kind in drift]
    return out


# -- one look's rows, and the fold --


@dataclass
class Rows:
    """One arm's requests of a look: what the prediction log holds for them."""

    latencies: list[float]
    outputs: list[object]  # one per successful request
    errors: int
    # labelled requests: when each label arrives (in requests served), the output, the label
    label_at: np.ndarray = field(default_factory=lambda: np.zeros(0))
    label_output: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    label_value: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class Look:
    generation: int
    arms: dict[str, Rows]


class Traffic:
    """Requests at a scenario's truth, served at the current step's share."""

    def __init__(self, world: World, rng: np.random.Generator) -> None:
        self.world, self.rng = world, rng
        self.served = 0  # requests so far (the label clock)
        if world.sticky_users:
            self.user_position = rng.random(USERS)  # canary when below the share
            heavy = rng.random(USERS) < 0.1
            self.user_error = np.where(heavy, 0.055, 0.005)  # 1% on average

    def look(self, share: float, generation: int) -> Look:
        rng, world = self.rng, self.world
        total = LOOK_ALONE if share >= 1 else round(LOOK_CANARY / share)
        if self.world.sticky_users:
            users = rng.integers(0, USERS, total)
            canary = self.user_position[users] < share
            failed = rng.random(total) < self.user_error[users]
        else:
            canary = rng.random(total) < share
            rates = np.where(canary, world.error[1], world.error[0])
            failed = rng.random(total) < rates
        index = self.served + np.arange(total)
        self.served += total
        arms = {}
        for arm, mask, k in (("baseline", ~canary, 0), ("canary", canary, 1)):
            n = int(mask.sum())
            if n == 0:
                continue
            scale = world.latency_scale if k == 1 else 1.0
            latencies = (rng.lognormal(math.log(20.0), 0.5, n) * scale).tolist()
            ok = ~failed[mask]
            m = int(ok.sum())
            if world.numeric_shift is not None:
                shift = world.numeric_shift if k == 1 else 0.0
                values = (rng.normal(shift, 1.0, m)).tolist()
                arms[arm] = Rows(latencies, values, n - m)
                continue
            outputs = (rng.random(m) < world.positive[k]).astype(np.int64)
            correct = rng.random(m) < world.accuracy[k]
            truth = np.where(correct, outputs, 1 - outputs)
            labelled = rng.random(m) < LABEL_SHARE
            arrival = index[mask][ok] + rng.exponential(LABEL_DELAY, m)
            arms[arm] = Rows(
                latencies,
                outputs.tolist(),
                n - m,
                arrival[labelled],
                outputs[labelled],
                truth[labelled],
            )
        return Look(generation, arms)


ARM_NAMES = ARMS  # arm codes 0 and 1 of the pending labels


class Pending:
    """Labels sent but not yet arrived: arrival, generation, arm (0/1), output, label."""

    def __init__(self) -> None:
        self.columns = [np.zeros(0), *(np.zeros(0, dtype=np.int64) for _ in range(4))]

    def add(self, look: Look) -> None:
        for code, arm in enumerate(ARM_NAMES):
            rows = look.arms.get(arm)
            if rows is None or not rows.label_at.size:
                continue
            size = rows.label_at.size
            new = [
                rows.label_at,
                np.full(size, look.generation),
                np.full(size, code),
                rows.label_output,
                rows.label_value,
            ]
            self.columns = [
                np.concatenate([old, add]) for old, add in zip(self.columns, new, strict=True)
            ]

    def arrived(self, now: float) -> list[np.ndarray]:
        """The labels arrived by ``now``, in the order they arrived."""
        due = self.columns[0] <= now
        done = [column[due] for column in self.columns]
        self.columns = [column[~due] for column in self.columns]
        order = np.argsort(done[0], kind="stable")
        return [column[order] for column in done]


def fold_look(summary: WindowSummary, look: Look, arrived: Sequence[np.ndarray]) -> None:
    """Fold one look's requests, then the labels that arrived since the last look, in the order
    they arrived, as ``PredictionLog.fold`` does with one chunk of each."""
    group = summary.groups.get(look.generation)
    if group is None:
        group = summary.groups[look.generation] = GroupCounts()
    for arm, rows in look.arms.items():
        group.requests[arm] += len(rows.latencies)
        group.errors[arm] += rows.errors
        summary.add_batch(
            arm,  # type: ignore[arg-type]
            {"2" if arm == "canary" else "1"},
            rows.latencies,
            rows.outputs,
            rows.errors,
            group.add_latencies(arm, rows.latencies),
        )
        summary.folded += len(rows.latencies)
    share = group.canary_share
    if share is not None and 0 < share < 1:
        summary.outputs.add_streams(
            share,
            look.arms["canary"].outputs,
            look.arms["baseline"].outputs,
            summary.labels.min_share,
        )
    _, generations, arm_codes, outputs, values = arrived
    if not generations.size:
        return
    by_generation: dict[int, dict[Arm, list[tuple[object, object]]]] = {
        generation: {}
        for generation in dict.fromkeys(generations.tolist())  # arrival order
    }
    for code, arm in enumerate(ARMS):
        mine = arm_codes == code
        if not mine.any():
            continue
        for generation, arms in by_generation.items():
            here = mine & (generations == generation)
            if here.any():
                arms[arm] = list(zip(outputs[here].tolist(), values[here].tolist(), strict=True))
    summary.labels.add_chunk(by_generation, summary.groups)


# -- one rollout --


@dataclass(frozen=True)
class Outcome:
    scenario: str
    outcome: str  # rolled_back, promoted, paused
    canary_requests: int  # in the rollout when it ended
    decided_at: int  # canary requests when the first step was decided (pass, fail or limit)
    naive_rolled_back: bool
    looks: int
    analyse_s: float  # time in analyse
    look_s: float  # time per look in fold + analyse + decide


def steps_of(spec: RolloutSpec) -> tuple[Step, ...]:
    assert spec.strategy.canary is not None
    return tuple(
        Step(weight_pct=s.weight, min_requests=s.min_requests, max_requests=s.max_requests)
        for s in spec.strategy.canary.steps
    )


def naive_rejects(summary: WindowSummary, alpha: float) -> bool:
    """Kayenta's way: fixed-horizon tests on the window, as if this look were the only one."""
    base, canary = summary.counts("baseline"), summary.counts("canary")
    if base.n_requests < 30 or canary.n_requests < 30:
        return False
    each = alpha / 4
    errors = two_proportion_z(
        base.n_errors, base.n_requests, canary.n_errors, canary.n_requests, 0.0, each
    )
    if 2 * min(errors.p_value, 1 - errors.p_value) < each:
        return True
    labels = summary.labels
    n_b, n_c = labels.labelled["baseline"], labels.labelled["canary"]
    if n_b >= 30 and n_c >= 30:
        wrong = two_proportion_z(
            n_b - labels.correct["baseline"], n_b, n_c - labels.correct["canary"], n_c, 0.0, each
        )
        if 2 * min(wrong.p_value, 1 - wrong.p_value) < each:
            return True
    outputs = summary.outputs
    if outputs.categorical and outputs.categories_complete:
        _, table = outputs.categories.table()
        keep = table.sum(axis=0) > 0
        if keep.sum() >= 2 and pearson_chi2(table[:, keep])[1] < each:
            return True
    bins = summary.latency.bins
    assert bins is not None
    theta, variance = mann_whitney_counts(bins.baseline_counts, bins.canary_counts)
    z = float(theta) / math.sqrt(float(variance))
    return 2 * float(normal.sf(abs(z))) < each


def run_one(scenario: Scenario, seed: int) -> Outcome:
    rng = np.random.default_rng(seed)
    spec = spec_for(scenario)
    steps = steps_of(spec)
    min_share = min(s.weight_pct for s in steps if 0 < s.weight_pct < 100) / 100
    state = RolloutState(
        id="bench",
        model="m",
        environment="prod",
        baseline_version="1",
        candidate_version="2",
        state="progressing",
        steps=steps,
        step_started_at=0.0,
        on_inconclusive=spec.analysis.on_inconclusive,
    )
    summary = WindowSummary(labels=LabelSummary(min_share=min(min_share, 1 - min_share)))
    traffic, pending = Traffic(scenario.world, rng), Pending()
    in_step, looks, naive, decided_at = 0, 0, False, 0
    analyse_s = look_s = 0.0
    outcome = "paused"
    while True:
        started = time.perf_counter()
        share = state.step.weight_pct / 100
        look = traffic.look(share, state.step_index + 1)
        pending.add(look)
        fold_look(summary, look, pending.arrived(traffic.served))
        canary_rows = look.arms.get("canary")
        in_step += len(canary_rows.latencies) if canary_rows else 0
        now = traffic.served / RATE
        middle = time.perf_counter()
        if state.step.weight_pct >= 100:  # the candidate alone: its SLO and history
            evidence = analyse_alone(
                summary,
                spec.analysis,
                first_generation=state.step_index + 1,
                weight_pct=state.step.weight_pct,
                step_index=state.step_index,
            )
        else:
            evidence = analyse(
                summary,
                spec.analysis,
                weight_pct=state.step.weight_pct,
                step_index=state.step_index,
            )
        analysed = time.perf_counter()
        evidence = replace(evidence, step_requests=in_step)
        decision = decide(state, evidence, now)
        look_s += time.perf_counter() - started
        analyse_s += analysed - middle
        looks += 1
        if scenario.expect == "aa" and not naive and share < 1:
            naive = naive_rejects(summary, spec.analysis.alpha)
        if not decision.changed:
            continue
        if state.step_index == 0 and decided_at == 0:
            decided_at = summary.counts("canary").n_requests
        if decision.to_state == "rolling_back":
            outcome = "rolled_back"
            break
        if decision.to_state in ("promoting", "awaiting_approval"):
            outcome = "promoted"
            break
        if decision.to_state == "paused":
            break
        state = replace(
            state,
            state=decision.to_state,
            step_index=decision.step_index,
            step_started_at=decision.step_started_at,
        )
        in_step = 0
    return Outcome(
        scenario.name,
        outcome,
        summary.counts("canary").n_requests,
        decided_at,
        naive,
        looks,
        analyse_s,
        look_s,
    )


def _job(args: tuple[Scenario, int]) -> Outcome:
    return run_one(*args)


# -- the oracle: one fixed-horizon test, 80% power, knowing the effect --


def _z(alpha: float) -> float:
    return normal.isf(alpha)


def oracle_fixed_n(scenario: Scenario, gate_share: float) -> float:
    """Canary requests one fixed-horizon one-sided test of the gate's hypothesis needs."""
    world, s = scenario.world, scenario.first_weight / 100
    z = _z(gate_share) + _z(0.2)
    analysis = spec_for(scenario).analysis
    if world.error[1] != world.error[0]:
        errors = analysis.error_rate
        assert errors is not None
        r, theta = world.error[0], world.error[1] / world.error[0]

        def share_of_events(t: float) -> float:
            return s * t / (s * t + 1 - s)

        q0, q1 = share_of_events(errors.max_ratio), share_of_events(theta)
        spread = _z(gate_share) * math.sqrt(q0 * (1 - q0)) + _z(0.2) * math.sqrt(q1 * (1 - q1))
        by_ratio = (spread / (q1 - q0)) ** 2 * s / (r * (s * theta + 1 - s))
        p_b, p_c = world.error
        unit = p_c * (1 - p_c) + p_b * (1 - p_b) * s / (1 - s)  # n_c * variance of the difference
        by_difference = unit * (z / (p_c - p_b - errors.max_increase)) ** 2
        return max(by_ratio, by_difference)
    if world.accuracy[1] != world.accuracy[0]:
        quality = analysis.quality
        assert quality is not None
        p_b, p_c = world.accuracy
        unit = p_c * (1 - p_c) + p_b * (1 - p_b) * s / (1 - s)
        return unit * (z / (p_b - p_c - quality.max_decrease)) ** 2 / LABEL_SHARE
    if world.latency_scale != 1.0:
        latency = analysis.latency
        assert latency is not None
        level = latency.quantile
        z_level = normal.ppf(level)
        density = math.exp(-z_level * z_level / 2) / math.sqrt(2 * math.pi)
        # the variance of a log quantile of a lognormal with sigma 0.5, both arms, per canary n
        unit = 0.5**2 * level * (1 - level) / density**2 * (1 + s / (1 - s))
        return unit * (z / (math.log(world.latency_scale) - math.log(latency.max_ratio))) ** 2
    drift = analysis.output_drift
    assert drift is not None and drift.delta is not None
    if world.numeric_shift is not None:
        distance = 1 - 2 * normal.sf(world.numeric_shift / 2)  # KS of N(0, 1) and N(d, 1)
        unit = 0.25 * (1 + s / (1 - s))
        return unit * (z / (distance - drift.delta)) ** 2
    p_b, p_c = world.positive
    unit = p_c * (1 - p_c) + p_b * (1 - p_b) * s / (1 - s)
    return unit * (z / (abs(p_c - p_b) - drift.delta)) ** 2


def forecast_of(scenario: Scenario) -> int | None:
    """What ``rollout plan`` says the first step needs (rollout/forecast.py), for this world's
    base rates."""
    if scenario.world.numeric_shift is not None:
        return None
    spec = spec_for(scenario)
    steps = steps_of(spec)
    smallest = min(s.weight_pct for s in steps if 0 < s.weight_pct < 100) / 100
    world = scenario.world
    rates = BaseRates(
        error_rate=world.error[0],
        accuracy=world.accuracy[0],
        labelled=LABEL_SHARE,
        classes=(1 - world.positive[0], world.positive[0]),
    )
    share = scenario.first_weight / 100
    return requests_to_pass(spec.analysis, share, min(smallest, 1 - smallest), rates)


def blocking_share(scenario: Scenario) -> float:
    analysis = spec_for(scenario).analysis
    return gate_alpha(analysis) if any(blocking(e) for e in analysis.effective_gates) else 0.05


# -- the run --


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of ``k`` successes in ``n`` (scipy's; (0, 1) for no runs)."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def simulate(
    plan: Sequence[Scenario], seed: int, workers: int
) -> Iterator[tuple[Scenario, list[Outcome]]]:
    """Each scenario's outcomes, in the plan's order; one pool of ``workers`` runs them all, so
    no core waits for a scenario's last runs."""
    jobs = [
        (scenario, seed * 1_000_003 + hash_name(scenario.name) + i)
        for scenario in plan
        for i in range(scenario.runs)
    ]
    results: dict[str, list[Outcome]] = {scenario.name: [] for scenario in plan}
    pending = list(plan)
    started = time.monotonic()

    def finished() -> Iterator[tuple[Scenario, list[Outcome]]]:
        while pending and len(results[pending[0].name]) == pending[0].runs:
            scenario = pending.pop(0)
            print(file=sys.stderr)
            yield scenario, results[scenario.name]

    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for done in pool.imap(_job, jobs, chunksize=4):
                results[done.scenario].append(done)
                _progress(pending[0], results[pending[0].name], started)
                yield from finished()
    else:
        for job in jobs:
            done = _job(job)
            results[done.scenario].append(done)
            _progress(pending[0], results[pending[0].name], started)
            yield from finished()


def hash_name(name: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) * 7919


def _progress(scenario: Scenario, outcomes: Sequence[Outcome], started: float) -> None:
    if len(outcomes) % 10 and len(outcomes) != scenario.runs:
        return
    back = sum(o.outcome == "rolled_back" for o in outcomes)
    print(
        f"\r  {scenario.name:<34} {len(outcomes):>5}/{scenario.runs} runs, "
        f"{back} rolled back, {time.monotonic() - started:5.0f} s",
        end="",
        file=sys.stderr,
        flush=True,
    )


def report(results: Mapping[Scenario, list[Outcome]], seconds: float) -> dict[str, object]:
    out: dict[str, object] = {}
    aa_worst = 0.0
    rows: list[tuple[str, ...]] = []
    all_looks = [o for outcomes in results.values() for o in outcomes]
    for scenario, outcomes in results.items():
        n = len(outcomes)
        back = sum(o.outcome == "rolled_back" for o in outcomes)
        promoted = [o for o in outcomes if o.outcome == "promoted"]
        name = scenario.name
        if scenario.expect == "aa":
            rate = back / n
            aa_worst = max(aa_worst, rate)
            to_pass = _median([o.decided_at for o in promoted])
            out[f"aa_false_rollback_rate_{name}"] = rate
            out[f"aa_false_rollback_ci95_{name}"] = list(wilson(back, n))
            out[f"aa_pass_rate_{name}"] = len(promoted) / n
            out[f"aa_median_requests_to_pass_{name}"] = to_pass
            naive = sum(o.naive_rolled_back for o in outcomes) / n
            out[f"naive_false_rollback_rate_{name}"] = naive
            forecast = forecast_of(scenario)
            out[f"forecast_requests_to_pass_{name}"] = forecast
            if forecast and to_pass:
                out[f"forecast_over_median_{name}"] = forecast / to_pass
            cells = [f"false rollbacks {back}/{n} = {rate:.3f}", f"pass {len(promoted) / n:.3f}"]
            cells += [f"median to pass {to_pass}", f"naive {naive:.3f}"]
        elif scenario.expect == "detect":
            detected = [o.canary_requests for o in outcomes if o.outcome == "rolled_back"]
            oracle = oracle_fixed_n(scenario, blocking_share(scenario))
            median = _median(detected)
            out[f"detection_rate_{name}"] = back / n
            out[f"median_requests_to_detect_{name}"] = median
            out[f"oracle_fixed_n_{name}"] = round(oracle)
            out[f"detect_over_oracle_{name}"] = (median / oracle) if median else None
            cells = [f"detected {back}/{n} = {back / n:.3f}", f"median {median}"]
            cells += [f"oracle {oracle:.0f} (x{(median or math.nan) / oracle:.2f})"]
        else:
            to_promote = _median([o.decided_at for o in promoted])
            out[f"promoted_rate_{name}"] = len(promoted) / n
            out[f"median_requests_to_promote_{name}"] = to_promote
            cells = [f"promoted {len(promoted)}/{n} = {len(promoted) / n:.3f}"]
            cells += [f"rolled back {back}", f"median {to_promote}"]
        rows.append((name, *cells))
    aa = [s for s in results if s.expect == "aa"]
    if aa:  # the headline figures of the A/A runs (the worst set, the 10% one)
        main_aa = next((s for s in aa if s.name == "aa_10pct"), aa[0])
        out["aa_false_rollback_rate"] = aa_worst
        out["aa_false_rollback_ci95"] = out[f"aa_false_rollback_ci95_{main_aa.name}"]
        out["aa_pass_rate"] = min(float(out[f"aa_pass_rate_{s.name}"]) for s in aa)  # type: ignore[arg-type]
        out["aa_median_requests_to_pass"] = out[f"aa_median_requests_to_pass_{main_aa.name}"]
        out["naive_false_rollback_rate"] = out[f"naive_false_rollback_rate_{main_aa.name}"]
    better = [s for s in results if s.expect == "promote"]
    if better:
        out["better_promoted_rate"] = min(float(out[f"promoted_rate_{s.name}"]) for s in better)  # type: ignore[arg-type]
    detections = [float(v) for k, v in out.items() if k.startswith("detection_rate_")]  # type: ignore[arg-type]
    if detections:
        out["min_detection_rate"] = min(detections)
    ratios = [float(v) for k, v in out.items() if k.startswith("detect_over_oracle_") and v]  # type: ignore[arg-type]
    if ratios:
        out["max_detect_over_oracle"] = max(ratios)
    looks = sum(o.looks for o in all_looks)
    out["seconds_per_look"] = sum(o.analyse_s for o in all_looks) / max(looks, 1)
    out["manager_seconds_per_look"] = sum(o.look_s for o in all_looks) / max(looks, 1)
    out["looks"] = looks
    out["runs"] = len(all_looks)
    out["seconds"] = round(seconds, 1)
    for row in rows:
        print(f"{row[0]:<34}" + "".join(f"{cell:<30}" for cell in row[1:]))
    return out


def _median(values: Sequence[int]) -> int | None:
    return int(statistics.median(values)) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 A/A runs at 10%%; fail at 19+")
    parser.add_argument("--runs-aa", type=int, default=1000, help="runs of each A/A at 10%%/50%%")
    parser.add_argument("--runs", type=int, default=400, help="runs of every other scenario")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.quick:
        plan = [Scenario("aa_10pct", World(), 10, QUICK_RUNS, "aa")]
    else:
        plan = scenarios(args.runs_aa, args.runs)
        if args.only:
            plan = [s for s in plan if args.only in s.name]
    started = time.monotonic()
    results = dict(simulate(plan, args.seed, args.workers))
    out = report(results, time.monotonic() - started)
    print(json.dumps(out, allow_nan=False))
    if args.quick:
        false = sum(o.outcome == "rolled_back" for o in results[plan[0]])
        return 1 if false >= QUICK_LIMIT else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
