"""Smoke tests: the declared payloads through the target environment's router, pinned to the
candidate, after it is staged (loaded at 0%) and before it gets any traffic.

Each :class:`~rollout.spec.SmokeTest` is one POST to
``{router}/v1/models/{model}/invocations`` with ``x-model-version: <candidate>`` and the
manager's pin token (``Authorization: Bearer``). It passes when the status is
``expect_status`` and, for a 200, the reply's ``x-model-version`` is the candidate and
``predictions`` is a list with one value per input row, of the type the candidate's signature
declares for its output, equal to ``expect_predictions`` when given.

While the router has not loaded the staged candidate yet (404 ``unknown_version``, 503
``not_ready``) :meth:`SmokeRunner.run` returns None (the rollout keeps verifying); after
``load_timeout_s`` that is a failure.

Configuration (environment variables of the manager): ``ROLLOUT_ROUTER_URL_<ENV>`` (e.g.
``ROLLOUT_ROUTER_URL_PROD``), else ``ROLLOUT_ROUTER_URL``; ``ROLLOUT_PIN_TOKEN`` (a token whose
sha256 is in the routers' ``ROLLOUT_PIN_TOKEN_SHA256``).

``payload_file`` (:func:`read_payload`): a JSON file inside the payload directory
(``ROLLOUT_SMOKE_PAYLOAD_DIR``, default ``$ROLLOUT_HOME/payloads``), named relative to it. The
resolved path (symlinks and ``..`` followed) must stay inside that directory, the file must be
a regular file (a FIFO, a device or a directory is refused without being read: it is opened
non-blocking and checked with ``fstat``) of at most :data:`MAX_PAYLOAD_BYTES`. A name that is
missing, outside the directory or not a regular file gets one and the same error, so the
check is no oracle for files elsewhere. :func:`check_payload_files` runs it when a rollout is
started (the error is immediate); the runner reads the file the same way.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from monitors import GateResult
from rollout.errors import SpecError
from rollout.lifecycle import StepEvidence
from rollout.spec import SmokeTest
from rollout.spec.document import excerpt

MAX_PAYLOAD_BYTES = 1 << 20

NOT_LOADED = {"unknown_version", "not_ready", "no_plan", "unknown_model"}
_NUMERIC = {"integer", "long", "float", "double"}


def rows_in(payload: Any) -> int | None:
    """How many input rows an MLflow scoring body holds (None when it cannot tell)."""
    if not isinstance(payload, Mapping):
        return None
    if isinstance(payload.get("dataframe_split"), Mapping):
        data = payload["dataframe_split"].get("data")
        return len(data) if isinstance(data, list) else None
    for key in ("dataframe_records", "instances", "inputs"):
        if isinstance(payload.get(key), list):
            return len(payload[key])
    return None


def output_type(signature: Mapping[str, Any] | None) -> str | None:
    """The single output type of an MLflow signature dict (``"long"``, ``"string"``...)."""
    if not signature or not signature.get("outputs"):
        return None
    outputs = signature["outputs"]
    if isinstance(outputs, str):
        outputs = json.loads(outputs)
    if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], dict):
        return None
    spec = outputs[0]
    kind = spec.get("type")
    if kind == "tensor":
        kind = (spec.get("tensor-spec") or {}).get("dtype")
    return str(kind) if kind else None


def type_ok(value: Any, kind: str) -> bool:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if kind == "boolean" or kind == "bool":
        return isinstance(value, bool)
    if kind == "string" or kind == "str":
        return isinstance(value, str)
    if kind in _NUMERIC or kind.startswith(("int", "float", "uint")):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


@dataclass(frozen=True)
class SmokeRunner:
    router_urls: Mapping[str, str]  # environment → base URL; "*" for every environment
    pin_token: str | None = None
    payload_dir: Path | None = None  # where payload_file may name files (None: nowhere)
    timeout_s: float = 10.0
    load_timeout_s: float = 60.0

    def url_for(self, environment: str) -> str | None:
        return self.router_urls.get(environment) or self.router_urls.get("*")

    def run(
        self,
        model: str,
        environment: str,
        version: str,
        tests: Sequence[SmokeTest],
        signature: Mapping[str, Any] | None,
        waited_s: float,
    ) -> StepEvidence | None:
        """The smoke tests' evidence; None while the router has not loaded ``version`` yet."""
        base = self.url_for(environment)
        if base is None or self.pin_token is None:
            missing = (
                "ROLLOUT_PIN_TOKEN"
                if base is not None
                else (f"ROLLOUT_ROUTER_URL_{environment.upper()} or ROLLOUT_ROUTER_URL")
            )
            return _evidence(
                [_result("smoke", "fail", f"{len(tests)} smoke test(s) declared but {missing} "
                         "is not set for the manager")]
            )  # fmt: skip
        headers = {"x-model-version": version, "authorization": f"Bearer {self.pin_token}"}
        url = f"{base.rstrip('/')}/v1/models/{model}/invocations"
        kind = output_type(signature)
        results: list[GateResult] = []
        with httpx.Client(timeout=self.timeout_s) as client:
            for index, test in enumerate(tests):
                name = test.name or f"smoke[{index}]"
                try:
                    payload = _payload(test, self.payload_dir)
                except SpecError as exc:
                    results.append(_result(name, "fail", f"cannot read the payload: {exc}"))
                    continue
                try:
                    reply = client.post(url, json=payload, headers=headers)
                except httpx.HTTPError as exc:
                    if waited_s < self.load_timeout_s:
                        return None
                    results.append(_result(name, "fail", f"router {base} unreachable: {exc}"))
                    continue
                code = _error_code(reply)
                if code in NOT_LOADED and test.expect_status != reply.status_code:
                    if waited_s < self.load_timeout_s:
                        return None
                    results.append(
                        _result(name, "fail", f"the router did not load v{version} within "
                                f"{self.load_timeout_s:g}s: {reply.status_code} {code}")
                    )  # fmt: skip
                    continue
                results.append(_check(name, test, payload, reply, version, kind))
        return _evidence(results)


def _payload(test: SmokeTest, directory: Path | None) -> Any:
    if test.payload is not None:
        return test.payload
    assert test.payload_file is not None
    return read_payload(test.payload_file, directory)


def check_payload_files(tests: Sequence[SmokeTest], directory: Path | None) -> None:
    """SpecError naming the first ``smoke_tests[i].payload_file`` that cannot be used."""
    for index, test in enumerate(tests):
        if test.payload is None and test.payload_file is not None:
            try:
                read_payload(test.payload_file, directory)
            except SpecError as exc:
                raise SpecError(f"smoke_tests[{index}].payload_file: {exc}") from None


def read_payload(name: str, directory: Path | None, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """The JSON in ``directory / name``, within the rules above; SpecError otherwise."""
    refused = SpecError(
        f"{excerpt(name)} is not a readable regular file in the payload directory "
        f"{directory} (ROLLOUT_SMOKE_PAYLOAD_DIR; name files relative to it)"
    )
    if directory is None:
        raise refused
    try:
        root = os.path.realpath(directory)
        target = os.path.realpath(os.path.join(root, name))
        inside = target != root and os.path.commonpath([root, target]) == root
        if not inside:
            raise refused
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except (OSError, ValueError):
        raise refused from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise refused
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            raise SpecError(f"{excerpt(name)} has {info.st_size} bytes; at most {max_bytes}")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SpecError(f"{excerpt(name)} has more than {max_bytes} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SpecError(f"{excerpt(name)} is not valid JSON: {excerpt(str(exc))[1:-1]}") from None


def _error_code(reply: httpx.Response) -> str | None:
    try:
        body = reply.json()
    except ValueError:
        return None
    return body.get("error_code") if isinstance(body, dict) else None


def _check(
    name: str,
    test: SmokeTest,
    payload: Any,
    reply: httpx.Response,
    version: str,
    kind: str | None,
) -> GateResult:
    if reply.status_code != test.expect_status:
        return _result(
            name,
            "fail",
            f"status {reply.status_code}, expected {test.expect_status}: {reply.text[:200]}",
        )
    if reply.status_code != 200:
        return _result(name, "pass", f"status {reply.status_code} as expected")
    served = reply.headers.get("x-model-version")
    if served != version:
        return _result(name, "fail", f"served by v{served}, expected the pinned v{version}")
    try:
        predictions = reply.json().get("predictions")
    except (ValueError, AttributeError):
        return _result(name, "fail", "the reply is not a JSON object with 'predictions'")
    if not isinstance(predictions, list):
        return _result(name, "fail", f"'predictions' is not a list: {predictions!r:.100}")
    rows = rows_in(payload)
    if rows is not None and len(predictions) != rows:
        return _result(name, "fail", f"{len(predictions)} predictions for {rows} input rows")
    if kind is not None:
        wrong = [p for p in predictions if not type_ok(p, kind)]
        if wrong:
            return _result(
                name, "fail", f"prediction {wrong[0]!r} is not of the signature's type {kind}"
            )
    if test.expect_predictions is not None and predictions != test.expect_predictions:
        return _result(
            name,
            "fail",
            f"predictions {predictions!r:.120} differ from the expected "
            f"{test.expect_predictions!r:.120}",
        )
    return _result(
        name, "pass", f"200 from v{version}, {len(predictions)} prediction(s) as expected"
    )


def _result(name: str, verdict: str, reason: str) -> GateResult:
    assert verdict in ("pass", "fail")
    return GateResult.unmeasured(name, "smoke", verdict, reason)  # type: ignore[arg-type]


def _evidence(results: list[GateResult]) -> StepEvidence:
    failed = [r for r in results if r.verdict == "fail"]
    if failed:
        reason = f"smoke test {failed[0].gate} failed: {failed[0].reason}"
    else:
        reason = f"{len(results)} smoke test(s) passed"
    return StepEvidence(
        verdict="fail" if failed else "pass", gates=tuple(results), reason=reason, kind="verify"
    )
