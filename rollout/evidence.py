"""What a look at a rollout finds: one source of evidence per kind of step.

:meth:`Evidence.look` gives the :class:`~rollout.lifecycle.StepEvidence` that
:func:`rollout.machine.decide` needs now, or None when the state needs none:

- ``pending`` with nothing serving yet (an initial release) and ``promoting``: the artifact
  digest, recomputed and compared with the one recorded at registration (a registry that does
  not answer raises :class:`~rollout.errors.RegistryUnavailable`, and its "not found" raises
  :class:`~rollout.errors.NotFoundUnconfirmed` until it is believed: the rollout waits,
  :mod:`rollout.outage`);
- ``verifying``: the digest, then the spec's smoke tests through the environment's router to
  the staged candidate (:mod:`rollout.smoke`; None while the router has not loaded it);
- ``progressing`` at a shadow step: the paired outputs of the baseline and the mirrored
  candidate (:mod:`rollout.shadow`);
- ``progressing`` at any other step: the step's window of the prediction log, folded into a
  bounded summary (new rows only at each look) and analysed by the spec's gates
  (:mod:`rollout.analysis`). A blue/green preview (0%) compares the requests pinned to the
  candidate with the baseline's. At 100% no baseline serves at the same time: the candidate's
  requests since the step began are judged against its SLO and, historically, against the
  baseline's before the switch (:func:`rollout.analysis.analyse_alone`);
- ``watching``: the promoted release's requests since its watch began, judged the same way
  (evidence kind ``watch``).

:meth:`Evidence.write_report` renders the Evidently drift report of a judged window, after the
decision is saved (rendering never delays a rollback).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from monitors import GateResult
from monitors.features import FeatureCounts
from rollout.analysis import analyse, analyse_alone, write_drift_report
from rollout.environments import Environment
from rollout.errors import RegistryError, RegistryUnavailable, VersionNotFound
from rollout.inputs import ServedInputs
from rollout.judge import Inputs
from rollout.lifecycle import RolloutState, Step, StepEvidence
from rollout.outage import NotFoundAnswers
from rollout.shadow import shadow_evidence
from rollout.spec import AnalysisSpec
from rollout.store.predictions import ArmSample, PredictionLog
from rollout.store.records import EventRecord, RolloutRecord
from rollout.stored import parse_spec
from rollout.summary import DEFAULT_MIN_SHARE, WindowSummary

if TYPE_CHECKING:
    from rollout.registry import MlflowRegistry
    from rollout.smoke import SmokeRunner

log = logging.getLogger(__name__)


class Evidence:
    def __init__(
        self,
        predictions: PredictionLog,
        registry: Callable[[], MlflowRegistry],
        smoke: Callable[[], SmokeRunner],
        reports: Path,
        events: Callable[[str], list[EventRecord]],
        environment: Callable[[str], Environment] = Environment,
    ) -> None:
        self.predictions = predictions
        self._environment = environment  # its policy by name (the SLO of a spec without one)
        self._events = events
        self._registry = registry
        self._smoke = smoke
        self.reports = reports
        # Per rollout: the window being judged and its running summary (bounded memory, new
        # rows only at each look); rebuilt from the log after a restart.
        self._windows: dict[str, tuple[tuple[float, str | None], WindowSummary]] = {}
        self._starts: dict[tuple[str, int], float] = {}  # (rollout, step index) -> first start
        self._inputs = ServedInputs(predictions, registry)  # the input_drift gate's features
        self._not_found = NotFoundAnswers()  # per rollout: "not found" answers not believed yet

    def look(self, record: RolloutRecord, state: RolloutState, now: float) -> StepEvidence | None:
        if state.state == "pending" and state.baseline_version is None:
            return self.digest(record, "verify", now)
        if state.state == "verifying":
            return self._verify(record, now)
        if state.state == "promoting":
            return self.digest(record, "promote", now)
        if state.state == "watching":
            return self._watch(record, state, now)
        if state.state != "progressing":
            return None
        since = state.step_started_at if state.step_started_at is not None else now
        step = state.step
        if step.is_shadow:
            return shadow_evidence(
                self.predictions.paired(record.id, since_ts=since),
                parse_spec(record.spec),
                step_index=state.step_index,
                window_start=since,
            )
        spec = parse_spec(record.spec)
        preview = record.candidate_version if step.is_preview else None
        start = since if preview is not None else self._judged_since(record, state, since)
        summary = self._window(record.id, start, preview, _min_share(state.steps))
        if preview is not None:  # the window is the step's own: the candidate's pinned requests
            in_step = summary.counts("canary").n_requests
        else:
            in_step = self.predictions.count(record.id, since).get("canary", 0)
        if step.weight_pct >= 100:  # the candidate alone: its SLO and its history
            first = self.predictions.first_generation(record.id, since)
            analysis = self._analysis(record)
            evidence = analyse_alone(
                summary,
                analysis,
                first_generation=sys.maxsize if first is None else first,  # none yet: no rows
                weight_pct=step.weight_pct,
                step_index=state.step_index,
                window_start=start,
                inputs=self._input_history(record, analysis, start, first),
                outputs=self._outputs(record, analysis, start, first),
            )
            return replace(evidence, step_requests=in_step)
        inputs = self._served_inputs(record, spec.analysis, start, preview)
        evidence = analyse(
            summary,
            spec.analysis,
            weight_pct=step.weight_pct,
            step_index=state.step_index,
            window_start=start,
            randomised=preview is None,
            inputs=inputs,
        )
        return replace(evidence, step_requests=in_step)

    def _watch(self, record: RolloutRecord, state: RolloutState, now: float) -> StepEvidence:
        """The promoted release during its watch: its requests since the watch began, against
        its SLO and, historically, the previous version's requests during the rollout's split
        steps, accuracy included as labels arrive (``analyse_alone`` with ``quality``, at the
        spec's alpha, spent again: the watch is a test of its own, after the rollout's
        decision)."""
        began = state.step_started_at if state.step_started_at is not None else now
        split = [i for i, step in enumerate(state.steps) if _split(step)]
        start = (
            self._judged_since(record, replace(state, step_index=split[-1]), began)
            if split
            else began
        )
        summary = self._window(record.id, start, None, _min_share(state.steps))
        first = self.predictions.first_generation_after(record.id, began)
        analysis = self._analysis(record)
        evidence = analyse_alone(
            summary,
            analysis,
            first_generation=sys.maxsize if first is None else first,  # none yet: no rows
            weight_pct=100,
            step_index=state.step_index,
            window_start=start,
            quality=True,  # delayed labels: the release against the previous one's record
            inputs=self._input_history(record, analysis, start, first),
            outputs=self._outputs(record, analysis, start, first),
        )
        return replace(evidence, kind="watch", step_requests=None)

    def _served_inputs(
        self, record: RolloutRecord, analysis: AnalysisSpec, start: float, preview: str | None
    ) -> Inputs | None:
        """The arms' features for the spec's ``input_drift`` gate (None: it has none)."""
        gate = analysis.input_drift
        return None if gate is None else self._inputs.look(record, start, preview, gate)

    def _input_history(
        self, record: RolloutRecord, analysis: AnalysisSpec, start: float, first: int | None
    ) -> Inputs | None:
        """The candidate's features since plan generation ``first`` against its own before it,
        for the spec's ``input_drift`` gate where it serves alone (None: no such gate, no rows
        yet)."""
        if analysis.input_drift is None or first is None:
            return None
        return self._inputs.history(record.id, start, first)

    def _outputs(
        self, record: RolloutRecord, analysis: AnalysisSpec, start: float, first: int | None
    ) -> FeatureCounts | None:
        """The candidate's outputs since plan generation ``first`` counted against its outputs
        before it, for the spec's ``output_drift`` gate judged historically (None: no such
        gate, no rows yet, or none before the switch)."""
        if analysis.output_drift is None or first is None:
            return None
        return self._inputs.outputs(record.id, start, first)

    def _analysis(self, record: RolloutRecord) -> AnalysisSpec:
        """The spec's analysis, with the environment's SLO when the spec gives none."""
        analysis = parse_spec(record.spec).analysis
        slo = self._environment(record.environment).slo
        if analysis.slo is None and not analysis.no_gates and slo is not None:
            analysis = analysis.model_copy(update={"slo": slo})
        return analysis

    def _judged_since(self, record: RolloutRecord, state: RolloutState, since: float) -> float:
        """Where the judged window starts: when the first of the current run of split steps
        (0-100%, not shadow) first started. The gates' confidence sequences run over the whole
        rollout from there, across steps, pauses and resumes; a step's floors count from its
        own (re)start."""
        first = state.step_index
        while first > 0 and _split(state.steps[first - 1]):
            first -= 1
        key = (record.id, first)
        if key not in self._starts:
            started = [
                event.ts
                for event in self._events(record.id)
                if event.to_state == "progressing" and event.step_index == first
            ]
            if not started:
                return since
            self._starts[key] = min(started)
        return self._starts[key]

    def digest(
        self, record: RolloutRecord, kind: Literal["verify", "promote"], now: float
    ) -> StepEvidence:
        """Does the candidate's artifact still have the digest recorded at registration?

        A registry that does not answer raises RegistryUnavailable; its "not found" raises
        NotFoundUnconfirmed until it has said so often enough to be believed (then: a fail)."""
        model, version = record.model, record.candidate_version
        try:
            digest = self._registry().verify_digest(model, version)
        except RegistryUnavailable:
            raise
        except VersionNotFound as exc:
            reason = f"{exc} ({self._not_found.confirm(record.id, now, exc)})"
            return StepEvidence(
                verdict="fail",
                gates=(_check("artifact_digest", "fail", reason),),
                reason=reason,
                kind=kind,
            )
        except RegistryError as exc:
            self._not_found.forget(record.id)
            return StepEvidence(
                verdict="fail",
                gates=(_check("artifact_digest", "fail", str(exc)),),
                reason=str(exc),
                kind=kind,
            )
        self._not_found.forget(record.id)
        return digest_matches(version, digest, kind)

    def _verify(self, record: RolloutRecord, now: float) -> StepEvidence | None:
        evidence = self.digest(record, "verify", now)
        tests = parse_spec(record.spec).smoke_tests
        if not tests or evidence.verdict != "pass":
            return evidence
        registry = self._registry()
        signature = registry.resolve(record.model, record.candidate_version).signature
        smoke = self._smoke().run(
            record.model,
            record.environment,
            record.candidate_version,
            tests,
            signature,
            waited_s=max(0.0, now - record.updated_at),
        )
        if smoke is None:
            return None  # the router has not loaded the staged candidate yet
        return StepEvidence(
            verdict=smoke.verdict,
            gates=evidence.gates + smoke.gates,
            reason=(
                smoke.reason if smoke.verdict == "fail" else f"{evidence.reason}; {smoke.reason}"
            ),
            kind="verify",
        )

    def _window(
        self, rollout_id: str, since: float, preview: str | None, min_share: float
    ) -> WindowSummary:
        """The judged window's summary, with the rows logged since the last look folded in."""
        key = (since, preview)
        cached = self._windows.get(rollout_id)
        summary = cached[1] if cached is not None and cached[0] == key else None
        summary = self.predictions.fold(
            rollout_id, since, summary, preview_version=preview, min_share=min_share
        )
        self._windows[rollout_id] = (key, summary)
        return summary

    # -- drift reports --

    def report_path(self, record: RolloutRecord, evidence: StepEvidence) -> Path | None:
        """Where the drift report of a judged step window goes; None when there is none."""
        if evidence.kind != "step" or not evidence.gates or (evidence.weight_pct or 0) >= 100:
            return None  # at 100% no baseline serves beside the candidate: nothing to compare
        step = (evidence.step_index or 0) + 1
        since = int(evidence.window_start or 0.0)
        return self.reports / record.id / f"step-{step}-{since}.html"

    def write_report(self, record: RolloutRecord, evidence: StepEvidence, path: Path) -> None:
        """Write the Evidently drift report of a judged window (features and outputs), headed
        by the window's gate verdicts so that it shows the distance the drift gate judged.

        The report is for people: a failure to write it is logged, never raised.
        """
        import pandas as pd

        since = evidence.window_start or 0.0
        try:
            preview = evidence.weight_pct == 0  # blue/green preview: the pinned requests
            arms = [
                self.predictions.report_rows(record.id, "baseline", since_ts=since),
                self.predictions.report_rows(
                    record.id,
                    "pinned" if preview else "canary",
                    since_ts=since,
                    version=record.candidate_version if preview else None,
                ),
            ]
            write_drift_report(
                ArmSample(arm="baseline", outputs=arms[0][1]),
                ArmSample(arm="canary", outputs=arms[1][1]),
                path,
                baseline_features=pd.DataFrame(arms[0][0]) if arms[0][0] else None,
                canary_features=pd.DataFrame(arms[1][0]) if arms[1][0] else None,
                gates=evidence.gates,
            )
        except (ValueError, OSError) as exc:
            log.warning("no drift report for rollout %s at %s: %s", record.id, path.name, exc)


def _split(step: Step) -> bool:
    return 0 < step.weight_pct < 100 and not step.is_shadow


def _min_share(steps: Sequence[Step]) -> float:
    """The smallest canary share (of canary or baseline) the rollout's split steps use."""
    shares = [min(s.weight_pct, 100 - s.weight_pct) / 100 for s in steps if _split(s)]
    return min(shares) if shares else DEFAULT_MIN_SHARE


def digest_matches(version: str, digest: str, kind: Literal["verify", "promote"]) -> StepEvidence:
    """The evidence that ``version``'s artifact has its recorded ``digest``."""
    reason = f"artifact of v{version} matches its recorded digest {digest[:19]}…"
    return StepEvidence(
        verdict="pass",
        gates=(_check("artifact_digest", "pass", reason),),
        reason=reason,
        kind=kind,
    )


def _check(gate: str, verdict: Literal["pass", "fail"], reason: str) -> GateResult:
    return GateResult.unmeasured(gate, "sha256", verdict, reason)
