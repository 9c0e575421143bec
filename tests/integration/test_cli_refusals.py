"""Clear errors instead of silent wrong places (issue 12, item 7), and ``--json`` everywhere.

Against the real registry and SQLite store of the ``home`` fixture, through ``main([...])``
and a real API on loopback: a missing data directory is refused (and not made), an
environment outside the configured order is refused by the CLI, a spec and the API (422
naming the field), ``plan`` exits 1 when it would do nothing because of a problem, ``/docs``
needs nothing but the API itself, and every verb of the parser prints one JSON document with
``--json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import MODEL, DemoHome, serving
from rollout.auth import Token
from rollout.cli import build_parser, main
from rollout.cli.parser import LOCAL_ONLY
from rollout.manager import Manager
from rollout.store.records import RecordStore

CANARY = {"canary": {"steps": [{"weight": 10}]}}


def run(home: DemoHome, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    s = home.settings
    base = ["--home", str(s.home), "--registry-uri", s.registry_uri, "--store-url", s.store_url]
    code = main([*base, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_missing_data_directory_is_refused_and_not_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROLLOUT_HOME", raising=False)
    monkeypatch.delenv("ROLLOUT_STORE_URL", raising=False)
    monkeypatch.delenv("ROLLOUT_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["status", MODEL, "--env", "prod"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        f"error: no data directory at {tmp_path / '.rollout'} (the default .rollout in the "
        f"current folder {tmp_path}); the registry and store would be made empty there."
    )
    assert "`rollout init`" in captured.err
    assert not (tmp_path / ".rollout").exists()  # nothing made, no empty registry

    monkeypatch.setenv("ROLLOUT_HOME", "elsewhere")  # relative: said as the absolute path
    assert main(["history", MODEL, "--env", "prod"]) == 2
    assert f"no data directory at {tmp_path / 'elsewhere'} (from ROLLOUT_HOME)" in (
        capsys.readouterr().err
    )
    assert main(["init", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert (made["home"], made["made"]) == (str(tmp_path / "elsewhere"), True)
    assert (tmp_path / "elsewhere").is_dir()
    assert main(["history", MODEL, "--env", "prod"]) == 0  # now it is there
    assert capsys.readouterr().out == f"no releases of {MODEL} in prod\n"


def test_an_environment_outside_the_order_is_refused_with_the_closest_name(
    home: DemoHome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    v1 = home.versions["baseline"]
    code, out, err = run(home, capsys, "start", MODEL, "--candidate", v1, "--env", "prd")
    assert (code, out) == (2, "")
    assert err == (
        "error: --env: 'prd' is not a configured environment: expected one of dev, staging, "
        f"prod (from {home.settings.environments_file}); did you mean 'prod'?\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {MODEL}\ncandidate: {v1}\nenvironment: prdo\n"
        "strategy: {canary: {steps: [{weight: 10}]}}\n"
    )
    for verb in ("plan", "apply"):
        code, out, err = run(home, capsys, verb, "-f", str(spec))
        assert (code, out) == (2, "")
        assert err.startswith("error: environment: 'prdo' is not a configured environment")
        assert err.endswith("did you mean 'prod'?\n")
    code, _, err = run(home, capsys, "audit", "--env", "qa")
    assert code == 2
    assert "'qa' is not a configured environment" in err and "did you mean" not in err
    manager = Manager(home.settings)
    try:
        assert RecordStore(manager.engine).list_active() == []  # nothing was released
        assert manager.history(MODEL, "prd") == []
    finally:
        manager.close()


def test_plan_exits_1_when_it_would_do_nothing_because_of_a_problem(
    home: DemoHome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    v1 = home.versions["baseline"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {MODEL}\ncandidate: {v1}\nenvironment: prod\n"
        "strategy: {canary: {steps: [{weight: 10}]}}\n"
    )
    code, out, _ = run(home, capsys, "plan", "-f", str(spec))
    assert code == 0 and f"would: initial release of v{v1} in prod" in out
    assert run(home, capsys, "start", MODEL, "--candidate", v1, "--env", "prod")[0] == 0
    other = tmp_path / "other.yaml"  # the same version, another config: it already serves
    other.write_text(
        f"model: {MODEL}\ncandidate: {v1}\nenvironment: prod\n"
        "strategy: {canary: {steps: [{weight: 20}]}}\n"
    )
    code, out, _ = run(home, capsys, "plan", "-f", str(other))
    assert code == 1
    assert "would: nothing" in out and f"problem: v{v1} already serves prod" in out
    code, out, _ = run(home, capsys, "plan", "-f", str(other), "--json")
    assert code == 1
    assert json.loads(out)["problems"] == [f"v{v1} already serves prod"]


def test_the_api_refuses_an_unknown_environment_and_serves_its_docs_offline(
    home: DemoHome,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rollout.api import create_app

    manager = Manager(home.settings)
    tokens = {hashlib.sha256(b"root-secret").hexdigest(): Token("root", ("admin",))}
    try:
        with serving(create_app(manager, tokens)) as client:
            page = client.get("/docs")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
            assert sorted(set(urls)) == [
                "/docs/assets/favicon-32x32.png",
                "/docs/assets/swagger-ui-bundle.js",
                "/docs/assets/swagger-ui.css",
                "/openapi.json",
            ]
            assert "http://" not in page.text and "https://" not in page.text
            js = client.get("/docs/assets/swagger-ui-bundle.js")
            assert (js.status_code, js.headers["content-type"]) == (
                200,
                "text/javascript; charset=utf-8",
            )
            assert "SwaggerUIBundle" in js.text and len(js.content) > 1_000_000
            css = client.get("/docs/assets/swagger-ui.css")
            assert (css.status_code, css.headers["content-type"]) == (
                200,
                "text/css; charset=utf-8",
            )
            assert ".swagger-ui" in css.text
            assert client.get("/docs/assets/..%2F..%2Fapi.py").status_code == 404
            missing = client.get("/docs/assets/index.html")  # shipped by npm, not served
            assert missing.status_code == 404
            assert missing.json()["message"].startswith("name: expected one of")
            assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN
            assert client.get("/openapi.json").json()["info"]["title"] == "mlrollout manager"

            client.headers["Authorization"] = "Bearer root-secret"
            refused = client.get(f"/v1/models/{MODEL}/environments/prd/status")
            assert refused.status_code == 422
            assert refused.json() == {
                "error_code": "unknown_environment",
                "message": "environment: 'prd' is not a configured environment: expected one "
                f"of dev, staging, prod (from {home.settings.environments_file}); "
                "did you mean 'prod'?",
            }
            body = {"model": MODEL, "candidate": home.versions["baseline"], "environment": "pdo"}
            refused = client.post("/v1/rollouts", json=body)
            assert refused.status_code == 422
            assert refused.json()["message"].startswith("environment: 'pdo' is not a configured")
            spec = {"model": MODEL, "candidate": "1", "environment": "stagin", "strategy": CANARY}
            refused = client.post("/v1/plan", json={"spec": spec})
            assert refused.status_code == 422
            assert refused.json()["message"].endswith("did you mean 'staging'?")
            assert (
                client.post(f"/v1/models/{MODEL}/environments/dve/pause")
                .json()["message"]
                .endswith("did you mean 'dev'?")
            )
            body = {"identity": "ana", "roles": ["scientist"], "expires": "1d"}
            refused = client.post("/v1/tokens", json={**body, "environments": ["dev", "stagin"]})
            assert (refused.status_code, refused.json()["error_code"]) == (
                422,
                "unknown_environment",
            )
            assert refused.json()["message"].startswith("environments[1]: 'stagin' is not a")
            assert RecordStore(manager.engine).list_active() == []
            assert client.get("/v1/tokens").json() == []  # nothing was made

            # the CLI through the API: the same refusal (exit 2), and plan's exit 1
            monkeypatch.setenv("ROLLOUT_TOKEN", "root-secret")
            api = ["--api", str(client.base_url)]
            assert main([*api, "status", MODEL, "--env", "prd"]) == 2
            assert capsys.readouterr().err.startswith(
                "error: 422 unknown_environment: environment: 'prd' is not a configured"
            )
            v1 = home.versions["baseline"]
            manager.start(MODEL, v1, "prod", None, "root")
            spec = tmp_path / "spec.yaml"
            spec.write_text(
                f"model: {MODEL}\ncandidate: {v1}\nenvironment: prod\n"
                "strategy: {canary: {steps: [{weight: 20}]}}\n"
            )
            assert main([*api, "plan", "-f", str(spec)]) == 1
            assert f"problem: v{v1} already serves prod" in capsys.readouterr().out
    finally:
        manager.close()


def _verbs() -> dict[str, argparse.ArgumentParser]:
    """Every verb of the parser (``token``'s actions as ``token create`` ...), processes aside."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    verbs: dict[str, argparse.ArgumentParser] = {}
    for name, sub in commands.choices.items():
        if name in LOCAL_ONLY:  # api, manager, demo, up, router: processes, not verbs
            continue
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            verbs |= {f"{name} {inner}": p for inner, p in action.choices.items()}
        if not nested:
            verbs[name] = sub
    return verbs


def test_every_verb_prints_one_json_document_with_json(
    home: DemoHome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    verbs = _verbs()
    assert {"init", "start", "status", "rollback", "token create"} <= set(verbs)
    for name, sub in verbs.items():
        assert any("--json" in a.option_strings for a in sub._actions), f"{name} has no --json"
    v1, v2, v3 = (home.versions[k] for k in ("baseline", "better", "broken"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"model: {MODEL}\ncandidate: {v1}\nenvironment: prod\n"
        "strategy: {canary: {steps: [{weight: 10}]}}\n"
    )
    gated = tmp_path / "gated.yaml"  # needs an approval: promote, then approve
    gated.write_text(
        "strategy: {canary: {steps: [{weight: 10, min_requests: 1000}]}}\n"
        "analysis: {gates: [error_rate]}\napproval: {required: true}\n"
    )
    ran: dict[str, Any] = {}

    def json_of(verb: str, *argv: str, codes: tuple[int, ...] = (0,)) -> Any:
        code, out, err = run(home, capsys, *verb.split(), *argv, "--json")
        assert code in codes, f"{verb}: exit {code}: {err}"
        ran[verb] = value = json.loads(out)  # one document, nothing else on stdout
        return value

    assert json_of("init")["made"] is False
    assert json_of("plan", "-f", str(spec))["would"] == f"initial release of v{v1} in prod: " + (
        "100% at once, @prod set"
    )
    assert json_of("apply", "-f", str(spec))["action"] == "started"
    started = json_of(
        "start", MODEL, "--candidate", v2, "--env", "prod", "-f", str(gated), "--actor", "alice"
    )
    assert started["state"] == "progressing"
    rollout_id = started["id"]
    assert json_of("status", MODEL, "--env", "prod")["rollout"]["id"] == rollout_id
    assert json_of("pause", MODEL, "--env", "prod")["state"] == "paused"
    assert json_of("resume", MODEL, "--env", "prod")["state"] == "progressing"
    promoted = json_of("promote", MODEL, "--env", "prod", "--actor", "bob")
    assert promoted["state"] == "awaiting_approval"
    approved = json_of("approve", MODEL, "--env", "prod", "--actor", "carol")
    assert approved["state"] == "succeeded"
    release = json_of("rollback", MODEL, "--env", "prod", "--reason", "test")
    assert (release["kind"], release["version"]) == ("rollback", v1)
    json_of("start", MODEL, "--candidate", v3, "--env", "prod", "-f", str(gated))
    assert json_of("abort", MODEL, "--env", "prod")["state"] == "aborted"
    kinds = [r["kind"] for r in json_of("history", MODEL, "--env", "prod")]
    assert kinds[-3:] == ["rollback", "promotion", "initial"]  # newest first
    json_of("monitor", MODEL, "--env", "prod")
    json_of("reference", MODEL, v1, codes=(0, 1))  # 1: none logged, still one document
    assert [e["to_state"] for e in json_of("events", rollout_id)][-1] == "succeeded"
    assert json_of("report", rollout_id)["rollout"]["id"] == rollout_id
    assert json_of("looks", rollout_id) == []
    assert {row["verb"] for row in json_of("audit")} >= {"start", "approve", "abort"}
    assert json_of("audit", "--verify")["ok"] is True
    created = json_of("token create", "--identity", "ci", "--role", "viewer")
    assert [t["identity"] for t in json_of("token list")] == ["ci"]
    assert json_of("token revoke", created["id"])[0]["state"] == "revoked"
    assert set(ran) == set(verbs) | {"audit"}  # every verb ran


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ROLLOUT_MANAGER_METRICS_PORT", "abc", "expected a port number 1..65535, got 'abc'"),
        ("ROLLOUT_MANAGER_METRICS_PORT", "70000", "expected a port number 1..65535"),
        ("ROLLOUT_METRICS_TOKEN_SHA256", "not-a-digest", "expected the sha256 of the scrape"),
        ("ROLLOUT_API_WATCH_STREAMS", "x", "expected a positive number, got 'x'"),
        ("ROLLOUT_AUDIT_HEAD_EVERY_S", "-1", "expected seconds between 0 and 86400"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_before_anything_starts(
    home: DemoHome,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    """A ``ROLLOUT_*`` value that cannot be used: exit 2 with ``error: NAME: what was expected``
    on one line, for the manager loop as for any verb (no traceback, nothing started)."""
    monkeypatch.setenv(variable, value)
    for argv in (["manager"], ["status", MODEL, "--env", "prod"]):
        code, out, err = run(home, capsys, *argv)
        assert (code, out) == (2, ""), err
        assert err == f"error: {variable}: {message}" + err.split(message, 1)[1]
        assert err.count("\n") == 1 and "Traceback" not in err
