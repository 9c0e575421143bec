"""``GET /v1/rollouts/{id}/drift-report`` (issue 12: the report's path was printed only by the
demo and ``--json``): the manager writes a judged window's report where it always does, and the
API serves the latest (or one step's) as HTML to whoever may read the rollout's report; a 404
JSON error before there is one; never a file outside the reports directory."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import MODEL, DemoHome, LogWriter, logged, serving
from contract.records import PredictionRecord
from monitors import GateResult
from rollout.api import create_app
from rollout.auth import parse_tokens
from rollout.drift_report import NoDriftReport, stored_report
from rollout.lifecycle import StepEvidence
from rollout.manager import Manager

INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}
SECRETS = {"admin": "admin-secret", "dev-viewer": "dev-viewer-secret"}
TOKENS = "admin:admin={},dev-viewer:viewer@dev={}".format(
    *(hashlib.sha256(s.encode()).hexdigest() for s in SECRETS.values())
)
N = 300  # requests per arm


def bearer(identity: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[identity]}"}


def records(rollout_id: str, arm: str, version: str, shift: float) -> list[PredictionRecord]:
    """Requests of one arm as a router logs them: one feature row and one output each."""
    rng = np.random.default_rng(0 if arm == "baseline" else 1)
    return [
        replace(
            logged(rollout_id, arm, version, int(rng.integers(0, 2))),
            features=json.dumps([{"amount": float(rng.normal(shift)), "kind": "ab"[i % 2]}]),
        )
        for i in range(N)
    ]


def test_the_api_serves_the_latest_drift_report_to_whoever_may_read_the_rollout(
    home: DemoHome,
) -> None:
    manager = Manager(home.settings)
    try:
        with serving(create_app(manager, parse_tokens(TOKENS))) as client:
            body = {"model": MODEL, "candidate": home.versions["baseline"], "environment": "prod"}
            started = client.post(
                "/v1/rollouts", json={**body, "spec": INSTANT}, headers=bearer("admin")
            )
            assert started.status_code == 201, started.text
            rollout_id = started.json()["id"]
            url = f"/v1/rollouts/{rollout_id}/drift-report"

            none_yet = client.get(url, headers=bearer("admin"))
            assert none_yet.status_code == 404
            pictures = {"url": None, "dashboard": f"/ui/rollouts/{rollout_id}"}
            assert manager.report(rollout_id)["drift_report"] == pictures
            assert none_yet.json() == {
                "error_code": "not_found",
                "message": f"rollout {rollout_id} has no drift report yet: one is written after "
                "each judged step window where baseline and canary both serve",
            }

            # The manager's own writer, on requests logged as a router logs them.
            v1 = home.versions["baseline"]
            writer = LogWriter(manager.engine)
            writer.write(records(rollout_id, "baseline", v1, 0.0))
            writer.write(records(rollout_id, "canary", v1, 1.0))
            record = manager.rollout(rollout_id)
            gate = GateResult.unmeasured("error_rate", "rate_ratio", "pass", "fine")
            paths = []
            for step, window_start in ((0, 100.0), (1, 140.0)):
                evidence = StepEvidence(
                    verdict="pass", gates=(gate,), step_index=step, weight_pct=50,
                    window_start=window_start,
                )  # fmt: skip
                path = manager.evidence.report_path(record, evidence)
                assert path is not None
                manager.evidence.write_report(record, evidence, path)
                paths.append(path)

            latest = client.get(url, headers=bearer("admin"))
            assert latest.status_code == 200
            report = client.get(f"/v1/rollouts/{rollout_id}/report", headers=bearer("admin"))
            assert report.json()["drift_report"] == {**pictures, "url": url}  # where it is
            assert latest.headers["content-type"] == "text/html; charset=utf-8"
            assert latest.text == paths[1].read_text(encoding="utf-8")
            assert '<section id="feature-drift"' in latest.text
            # amount (shifted by 1 sd) is flagged; kind and the outputs (no output gate) not
            assert "<h2>Feature drift: 1 of 3 features flagged" in latest.text
            assert re.search(
                r"<tr><td [^>]*>amount</td>(<td [^>]*>[^<]*</td>){5}<td [^>]*>drifted<", latest.text
            )
            first = client.get(url, params={"step": 1}, headers=bearer("admin"))
            assert first.text == paths[0].read_text(encoding="utf-8")

            missing = client.get(url, params={"step": 3}, headers=bearer("admin"))
            assert (missing.status_code, missing.json()["error_code"]) == (404, "not_found")
            assert "no drift report of step 3 yet" in missing.json()["message"]
            bad = client.get(url, params={"step": 0}, headers=bearer("admin"))
            assert (bad.status_code, bad.json()["error_code"]) == (422, "invalid_request")
            assert bad.json()["message"].startswith("query.step: ")
            # a token limited to dev is answered as for an unknown id (it cannot tell ids apart)
            hidden = client.get(url, headers=bearer("dev-viewer"))
            assert (hidden.status_code, hidden.json()["error_code"]) == (404, "not_found")
            assert hidden.json()["message"].startswith("no rollout with id ")
            slash = client.get(
                "/v1/rollouts/%2E%2E%2Fsecrets/drift-report", headers=bearer("admin")
            )
            assert slash.status_code == 404  # no route has a slash in an id
            for other in ("no-such-rollout", "%2E%2E"):
                reply = client.get(f"/v1/rollouts/{other}/drift-report", headers=bearer("admin"))
                assert reply.status_code == 404, (other, reply.text)
                assert reply.json().get("error_code") == "not_found", (other, reply.text)
    finally:
        manager.close()


def test_stored_report_reads_only_report_names_inside_the_reports_directory(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    (reports / "r1").mkdir(parents=True)
    outside = tmp_path / "secret.html"
    outside.write_text("secret")
    os.symlink(outside, reports / "r1" / "step-9-999.html")  # a link out: skipped
    (reports / "r1" / "notes.html").write_text("not a report name")
    with pytest.raises(NoDriftReport, match="rollout r1 has no drift report yet"):
        stored_report(reports, "r1")
    (reports / "r1" / "step-2-50.html").write_text("two")
    (reports / "r1" / "step-1-70.html").write_text("one, later window")
    assert stored_report(reports, "r1").read_text() == "one, later window"
    assert stored_report(reports, "r1", step=2).read_text() == "two"
    for name in ("..", ".", "r1/..", "../reports/r1"):
        with pytest.raises(NoDriftReport):
            stored_report(reports, name)
