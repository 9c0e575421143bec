"""Every look's bounds, per gate, kept for plots of how a rollout's evidence grew.

The loop records a look (:meth:`LookStore.record`) when its window has grown since the last one
it recorded for that step: one row per gate with the effect, its anytime-valid bounds, the
margin and the verdict. A step keeps at most ``MAX_LOOKS_PER_STEP`` looks: when it fills, every
other look is dropped (the first and the newest stay), so a long step keeps an evenly thinned
record of its whole history in bounded space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import Engine, RowMapping, delete, func, select

from contract.sql.schema import look_bounds
from rollout.lifecycle import StepEvidence

MAX_LOOKS_PER_STEP = 200


@dataclass(frozen=True)
class GateBounds:
    """One gate at one look: its effect and bounds (None where there is none yet)."""

    gate: str
    verdict: str
    blocking: bool
    estimate: float | None
    low: float | None
    high: float | None
    threshold: float | None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LookRecord:
    """One kept look of a step: when, how many requests, and every gate's bounds."""

    step_index: int
    seq: int
    ts: float
    n_baseline: int
    n_canary: int
    gates: tuple[GateBounds, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "step_index": self.step_index,
            "seq": self.seq,
            "ts": self.ts,
            "n_baseline": self.n_baseline,
            "n_canary": self.n_canary,
            "gates": [gate.to_dict() for gate in self.gates],
        }


class LookStore:
    def __init__(self, engine: Engine, max_per_step: int = MAX_LOOKS_PER_STEP) -> None:
        if max_per_step < 2:
            raise ValueError(f"max_per_step must be at least 2, got {max_per_step}")
        self.engine = engine
        self.max_per_step = max_per_step

    def record(self, rollout_id: str, evidence: StepEvidence, ts: float) -> None:
        """Keep a step look's gates (a look without gates or step is not kept)."""
        if evidence.kind != "step" or evidence.step_index is None or not evidence.gates:
            return
        step = evidence.step_index
        where = (look_bounds.c.rollout_id == rollout_id) & (look_bounds.c.step_index == step)
        with self.engine.begin() as conn:
            last = conn.execute(select(func.max(look_bounds.c.seq)).where(where)).scalar()
            seq = 0 if last is None else int(last) + 1
            conn.execute(
                look_bounds.insert(),
                [
                    {
                        "rollout_id": rollout_id,
                        "step_index": step,
                        "seq": seq,
                        "ts": ts,
                        "n_baseline": evidence.n_baseline,
                        "n_canary": evidence.n_canary,
                        "gate": gate.gate,
                        "verdict": gate.verdict,
                        "blocking": gate.blocking,
                        "estimate": _finite(gate.effect_size),
                        "low": _finite(gate.ci_low),
                        "high": _finite(gate.ci_high),
                        "threshold": _finite(gate.threshold),
                    }
                    for gate in evidence.gates
                ],
            )
            kept = (
                conn.execute(
                    select(look_bounds.c.seq).where(where).distinct().order_by(look_bounds.c.seq)
                )
                .scalars()
                .all()
            )
            if len(kept) > self.max_per_step:
                dropped = _thinned(kept)
                conn.execute(delete(look_bounds).where(where & look_bounds.c.seq.in_(dropped)))

    def looks(self, rollout_id: str, step_index: int | None = None) -> list[LookRecord]:
        """The kept looks of a rollout (or of one step), oldest first."""
        query = select(look_bounds).where(look_bounds.c.rollout_id == rollout_id)
        if step_index is not None:
            query = query.where(look_bounds.c.step_index == step_index)
        query = query.order_by(look_bounds.c.step_index, look_bounds.c.seq, look_bounds.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        looks: list[LookRecord] = []
        for _, group in groupby(rows, key=lambda row: (row["step_index"], row["seq"])):
            gates = list(group)  # one row per gate, each with the look's step, time and counts
            first = gates[0]
            looks.append(
                LookRecord(
                    first["step_index"],
                    first["seq"],
                    first["ts"],
                    first["n_baseline"],
                    first["n_canary"],
                    tuple(_gate(row) for row in gates),
                )
            )
        return looks


def _gate(row: RowMapping) -> GateBounds:
    return GateBounds(
        gate=row["gate"],
        verdict=row["verdict"],
        blocking=bool(row["blocking"]),
        estimate=row["estimate"],
        low=row["low"],
        high=row["high"],
        threshold=row["threshold"],
    )


def _thinned(kept: Sequence[int]) -> list[int]:
    """Every other look, never the first or the newest."""
    return [seq for i, seq in enumerate(kept[:-1]) if i % 2 == 1]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


__all__ = ["MAX_LOOKS_PER_STEP", "GateBounds", "LookRecord", "LookStore"]
