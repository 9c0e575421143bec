"""The whole spec: :class:`RolloutSpec`, loaded from YAML, hashed, with errors that name paths.

- :func:`load_spec` accepts YAML/JSON text, a path or a dict and returns a frozen
  :class:`RolloutSpec`; every validation problem becomes one
  :class:`~rollout.errors.SpecError`, whose message (:func:`format_errors`) names the field
  path and what was expected, e.g. ``strategy.canary.steps[1].weight: must be 1..100, got 150``.
- :func:`config_hash` is sha256 over the canonical JSON of the validated spec (defaults filled
  in), so two spellings of the same spec hash the same.
- Limits (README, "Security"): a spec is at most :data:`MAX_SPEC_BYTES` (256 KiB; a file's
  size is checked before it is read, and only regular files are read), nested at most
  :data:`MAX_DEPTH` (32) deep, and YAML aliases (``*name``) are refused, so a billion-laughs
  spec fails at its first alias instead of expanding. An error quotes at most
  :data:`EXCERPT_CHARS` (120) characters of any input value and is at most
  :data:`MAX_MESSAGE_CHARS` long, so a huge invalid spec never becomes a huge error or audit row.
  :func:`parse_yaml` is that loader, shared with the environments file.
- :func:`default_spec` is what ``rollout start`` uses without ``-f``: canary steps 10/50/100,
  the default gates (error_rate, latency, quality; output_drift advisory), pause when
  inconclusive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from rollout.errors import SpecError
from rollout.lifecycle import OnApprovalTimeout, Step
from rollout.spec.fields import OptionalDuration, WatchDuration, _Model
from rollout.spec.gates import _GATE_TYPES, AnalysisSpec
from rollout.spec.strategies import _STRATEGY_TYPES, StrategySpec

MAX_SPEC_BYTES = 256 * 1024
MAX_DEPTH = 32
EXCERPT_CHARS = 120
MAX_MESSAGE_CHARS = 2000


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters (with how much was left out)."""
    if isinstance(value, str | bytes) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # never repr a huge string whole
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (cut)"


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with a nesting limit (the composer is recursive)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            raise SpecError(
                f"aliases are not allowed in a spec (found '*{event.anchor}' at line "
                f"{event.start_mark.line + 1}); write the value out"
            )
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise SpecError(f"nested more than {MAX_DEPTH} levels deep at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_yaml(text: str, where: str = "") -> object:
    """YAML (or JSON) text → data, within the limits above; SpecError (prefixed ``where``)."""
    if len(text) > MAX_SPEC_BYTES or len(text.encode()) > MAX_SPEC_BYTES:
        raise SpecError(f"{where}a spec may be at most {MAX_SPEC_BYTES} bytes")
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    except SpecError as exc:
        raise SpecError(f"{where}{exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}not valid YAML{at}: {excerpt(problem)[1:-1]}") from None
    finally:
        loader.dispose()


def read_spec_file(path: Path) -> str:
    """The text of a spec file: a regular file of at most MAX_SPEC_BYTES (checked first)."""
    if "\x00" in str(path):
        raise SpecError(f"cannot read spec file {excerpt(str(path))}: a file name has no NUL byte")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SpecError(f"cannot read spec file {path}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(
                f"{path}: a spec may be at most {MAX_SPEC_BYTES} bytes, the file has {info.st_size}"
            )
        data = handle.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: a spec may be at most {MAX_SPEC_BYTES} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None


def depth_of(data: object, limit: int = MAX_DEPTH) -> int:
    """How deeply ``data`` (mappings and lists) nests, counted up to ``limit + 1`` (iterative,
    so a deep value cannot exhaust the stack)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if not isinstance(value, Mapping | list | tuple):
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        children = value.values() if isinstance(value, Mapping) else value
        stack.extend((child, level + 1) for child in children)
    return deepest


class ApprovalSpec(_Model):
    """``approval: {required: true, timeout: 24h, on_timeout: rollback}``.

    ``required`` adds to the environment's own policy (either may require an approval);
    ``timeout`` (unset: wait for ever) and ``on_timeout`` override the environment's.
    """

    required: bool = False
    timeout_s: OptionalDuration = Field(default=None, alias="timeout")
    on_timeout: OnApprovalTimeout | None = None


class SmokeTest(_Model):
    """One request sent through the router to the pinned candidate before any traffic.

    ``payload`` (or ``payload_file``, a JSON file named relative to the payload directory,
    ``ROLLOUT_SMOKE_PAYLOAD_DIR``, default ``$ROLLOUT_HOME/payloads``: :mod:`rollout.smoke`)
    is an MLflow scoring body; the reply must have ``expect_status``, and on 200 a
    ``predictions`` list with one value per input row, each of the type the candidate's MLflow
    signature declares, equal to ``expect_predictions`` when given.
    """

    name: str | None = None
    payload_file: str | None = None
    payload: Any = None
    expect_status: int = 200
    expect_predictions: list[Any] | None = None

    @model_validator(mode="after")
    def _has_payload(self) -> SmokeTest:
        if self.payload_file is None and self.payload is None:
            raise ValueError("expected 'payload_file' or 'payload'")
        return self


class RolloutSpec(_Model):
    model: str | None = None
    candidate: str | None = None  # a version number ("7") or an alias ("@challenger")
    environment: str | None = None
    strategy: StrategySpec
    analysis: AnalysisSpec = AnalysisSpec()
    approval: ApprovalSpec = ApprovalSpec()
    smoke_tests: tuple[SmokeTest, ...] = ()
    # how long the promoted release is watched (``watch: 30m``; 0: not at all; unset: the
    # environment's ``watch``)
    watch_s: WatchDuration = Field(default=None, alias="watch")

    @field_validator("candidate", mode="before")
    @classmethod
    def _candidate(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return str(value)
        if isinstance(value, str) and (
            value.strip().isdigit() or re.fullmatch(r"@[\w.-]+", value.strip())
        ):
            return value.strip()
        raise ValueError(f"expected a version number or '@alias', got {value!r}")

    @field_validator("model", "environment")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    def steps(self) -> tuple[Step, ...]:
        """The canary steps the state machine walks (linear expanded)."""
        return self.strategy.steps()

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def config_hash(spec: RolloutSpec) -> str:
    """sha256 (hex) of the spec's canonical JSON."""
    return hashlib.sha256(spec.canonical_json().encode()).hexdigest()


DEFAULT_SPEC: dict[str, Any] = {
    "strategy": {
        "canary": {
            "steps": [
                {"weight": 10, "min_requests": 100},
                {"weight": 50, "min_requests": 200},
                {"weight": 100, "min_requests": 100},
            ]
        }
    },
    "analysis": {"alpha": 0.05, "on_inconclusive": "pause"},  # no gates listed: the defaults
}


def default_spec() -> RolloutSpec:
    return load_spec(DEFAULT_SPEC)


def load_spec(source: str | Path | Mapping[str, Any]) -> RolloutSpec:
    """Validate a spec given as a mapping, YAML/JSON text, or a path to a YAML file."""
    data: object
    where = ""
    if isinstance(source, Mapping):
        if depth_of(source) > MAX_DEPTH:
            raise SpecError(f"the spec is nested more than {MAX_DEPTH} levels deep")
        data = dict(source)
    else:
        text = str(source)
        is_path = isinstance(source, Path) or (
            len(text) < 4096 and "\n" not in text and text.endswith((".yaml", ".yml", ".json"))
        )
        if is_path:
            path = Path(source)
            where = f"{path}: "
            text = read_spec_file(path)
        data = parse_yaml(text, where)
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(where + format_errors(exc)) from None


_UNION_TAGS = frozenset(model.__name__ for model in (*_STRATEGY_TYPES, *_GATE_TYPES))


def format_errors(exc: ValidationError) -> str:
    """``path: problem`` per error, joined by ``; `` (at most MAX_MESSAGE_CHARS in all)."""
    out = ""
    errors = exc.errors()
    for shown, error in enumerate(errors):
        one = _format_one(error)
        if out and len(out) + len(one) > MAX_MESSAGE_CHARS:
            return f"{out}; ... and {len(errors) - shown} more problem(s)"
        out = f"{out}; {one}" if out else one[:MAX_MESSAGE_CHARS]
    return out


def _format_one(error: Mapping[str, Any]) -> str:
    path = _path(error["loc"])
    kind = error["type"]
    message = str(error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind.startswith("literal_error"):
        expected = error.get("ctx", {}).get("expected", "")
        message = f"expected {excerpt(expected)[1:-1]}, got {excerpt(error.get('input'))}"
    else:
        message = f"{message[0].lower()}{message[1:]}, got {excerpt(error.get('input'))}"
    if len(message) > 3 * EXCERPT_CHARS:  # a validator that quoted a huge value
        message = f"{message[: 3 * EXCERPT_CHARS]}... (cut)"
    return f"{path}: {message}" if path else message


def _path(loc: tuple[int | str, ...]) -> str:
    """``strategy.canary.steps[1].weight``: the YAML path (without the tags of the unions)."""
    out = ""
    for part in loc:
        if part in _UNION_TAGS:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out
