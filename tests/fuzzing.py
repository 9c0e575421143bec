"""Shared by the fuzz tests: run schemathesis over every operation of an OpenAPI schema against
a server on loopback, and collect what went wrong instead of stopping at the first failure.

:func:`fuzz_schema` drives each operation with hypothesis (``max_examples`` per operation and
generation mode, no deadline, no example database, no shrinking: bounded, repeatable CI time)
and returns a :class:`Findings`: every reply with a 5xx status or no reply at all
(``server_errors``), every reply whose body or content type contradicts the schema for a
documented status (``nonconforming``), and the statuses the schema does not document
(``undocumented``, counted, informative). Each finding names the request that caused it, so a
failure message is a reproducer.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core import NotSet
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

EXCERPT = 300  # characters of a body shown in a finding


def excerpt(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= EXCERPT else f"{text[:EXCERPT]}... ({len(text)} characters)"


def describe(case: Case) -> str:
    """``METHOD /path?query body=...``: enough to send the same request again."""
    parts = [f"{case.method.upper()} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={excerpt(case.query)}")
    if not isinstance(case.body, NotSet):
        parts.append(f"body={excerpt(case.body)}")
    return " ".join(parts)


@dataclass
class Findings:
    server_errors: list[str] = field(default_factory=list)
    nonconforming: list[str] = field(default_factory=list)
    undocumented: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)  # "GET /path 404" → count
    requests: int = 0

    def unique_server_errors(self) -> list[str]:
        return sorted(set(self.server_errors))


def fuzz_schema(
    schema: BaseSchema,
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    max_examples: int = 20,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    timeout_s: float = 15.0,
) -> Findings:
    """Fuzz every operation of ``schema`` against ``base_url`` (see the module docstring)."""
    findings = Findings()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in modes:
                run = _runner(operation, mode, findings, session, base_url, headers, timeout_s)
                try:
                    settings(
                        max_examples=max_examples,
                        deadline=None,
                        database=None,
                        derandomize=True,
                        phases=[Phase.explicit, Phase.generate],
                        suppress_health_check=list(HealthCheck),
                    )(run)()
                except Unsatisfiable:  # e.g. no way to violate the schema of GET /healthz
                    continue
    return findings


def _runner(
    operation: Any,
    mode: GenerationMode,
    findings: Findings,
    session: requests.Session,
    base_url: str,
    headers: dict[str, str] | None,
    timeout_s: float,
) -> Any:
    """A hypothesis test sending ``operation``'s cases and noting what breaks the contract."""
    documented = operation.definition.raw.get("responses", {})

    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        findings.requests += 1
        try:
            response = case.call(
                base_url=base_url, session=session, headers=headers, timeout=timeout_s
            )
        except requests.RequestException as exc:
            findings.server_errors.append(f"{describe(case)} -> no reply: {type(exc).__name__}")
            return
        status = response.status_code
        findings.statuses[status] += 1
        findings.by_operation[f"{operation.label} {status}"] += 1
        if status >= 500:
            findings.server_errors.append(f"{describe(case)} -> {status} {excerpt(response.text)}")
            return
        if str(status) not in documented and "default" not in documented:
            findings.undocumented[f"{operation.label} {status}"] += 1
            return
        try:
            case.validate_response(
                response, checks=[response_schema_conformance, content_type_conformance]
            )
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            findings.nonconforming.append(f"{describe(case)} -> {status}: {first}")

    return run


def report(findings: Findings) -> str:
    """A failure message: the distinct 5xx, then the non-conforming replies."""
    lines = [f"{findings.requests} requests, statuses {dict(sorted(findings.statuses.items()))}"]
    lines += [f"{op}: {n}" for op, n in sorted(findings.by_operation.items())]
    lines += [f"5xx: {line}" for line in findings.unique_server_errors()[:20]]
    lines += [f"nonconforming: {line}" for line in sorted(set(findings.nonconforming))[:20]]
    return "\n".join(lines)
