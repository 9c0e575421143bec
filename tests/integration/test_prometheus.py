"""deploy/prometheus and deploy/grafana against a real Prometheus and real processes.

``promtool`` checks the scrape config and the alert rules and runs the rules' unit tests; then
a real ``prometheus`` (Debian's package: ``make tools``) scrapes a real router, manager and API
on loopback every second while a canary runs, and every query of the Grafana dashboard (each
panel's targets, the annotations, the template variables) goes through Prometheus's HTTP API:
each parses and returns data. Off CI a missing Prometheus skips; under ``CI=true`` it fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import MODEL, DemoHome, LogWriter, clear_of_a_closing, logged, wait_until
from rollout.degradation import SETTLE_S
from rollout.manager import Manager
from rollout.spec import load_spec
from rollout.up import ProcessSpec, Supervisor, free_port, process_specs

CLOSING_S = 180.0  # longer than the test takes from there to reading the window metric

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "rollout.json"
SCRAPE_TOKEN = "scrape-token-for-tests"
# what Grafana puts in for its variables and macros when it sends a query
GRAFANA_VARIABLES = {
    "$__rate_interval": "10s",
    "$__range": "5m",
    "$model": ".*",
    "$environment": ".*",
}
SPEC = load_spec(
    {
        "strategy": {"canary": {"steps": [{"weight": 50, "min_requests": 100_000}]}},
        "analysis": {"gates": ["error_rate", "latency"]},
    }
)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (make tools, or deploy/install-tools.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_promtool_checks_the_config_and_the_rules(tmp_path: Path) -> None:
    promtool = tool("promtool")
    for name in ("prometheus.yml", "alerts.yml", "alerts_test.yml"):
        shutil.copy(DEPLOY / "prometheus" / name, tmp_path / name)
    (tmp_path / "scrape-token").write_text(SCRAPE_TOKEN)  # the compose secret's place
    assert "SUCCESS" in run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert "SUCCESS: 7 rules found" in run(promtool, "check", "rules", str(tmp_path / "alerts.yml"))
    assert "SUCCESS" in run(promtool, "test", "rules", str(tmp_path / "alerts_test.yml"))
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets == {
        "manager": ["manager:9100"],
        "api": ["api:8090"],
        "router": ["router-1:8080", "router-2:8080"],
    }


def test_grafana_provisioning_names_the_dashboard_and_the_data_source() -> None:
    grafana = DEPLOY / "grafana" / "provisioning"
    source = yaml.safe_load((grafana / "datasources" / "prometheus.yml").read_text())
    (datasource,) = source["datasources"]
    assert (datasource["type"], datasource["uid"]) == ("prometheus", "prometheus")
    provider = yaml.safe_load((grafana / "dashboards" / "rollout.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert len(titles) == len(set(titles))


def dashboard_queries() -> dict[str, str]:
    """Every PromQL query of the dashboard, by where it is, with Grafana's variables put in."""
    dashboard = json.loads(DASHBOARD.read_text())
    found: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        found[f"annotation {annotation['name']!r}"] = annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        found[f"variable {variable['name']!r}"] = f"count by ({match[2]}) ({match[1]})"
    for where, expr in found.items():
        for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(name, value)
        assert "$" not in expr, f"{where}: a variable the test does not know: {expr}"
        found[where] = expr
    return found


def prometheus_config(path: Path, manager: int, api: int, router: int) -> None:
    token = path.parent / "scrape-token"
    token.write_text(SCRAPE_TOKEN)
    jobs: list[dict[str, Any]] = [
        {"job_name": "manager", "static_configs": [{"targets": [f"127.0.0.1:{manager}"]}]},
        {
            "job_name": "api",
            "authorization": {"type": "Bearer", "credentials_file": str(token)},
            "static_configs": [{"targets": [f"127.0.0.1:{api}"]}],
        },
        {
            "job_name": "router",  # as deploy/prometheus/prometheus.yml: labelled by environment
            "static_configs": [
                {"targets": [f"127.0.0.1:{router}"], "labels": {"environment": "prod"}}
            ],
        },
    ]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}}
    path.write_text(yaml.safe_dump({**config, "scrape_configs": jobs}))


def start_prometheus(config: Path, port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / "prometheus.log").open("wb")
    return subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def query(port: int, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    assert reply["status"] == "success", f"{expr}: {reply}"
    result: list[dict[str, Any]] = reply["data"]["result"]
    return result


def traffic(base_url: str, home: DemoHome, stop: threading.Event) -> None:
    """Requests from many users, about 20 a second, until ``stop``."""
    rows = home.data.serve_X.iloc[:2]
    payload = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        user = 0
        while not stop.wait(0.05):
            user += 1
            with contextlib.suppress(httpx.HTTPError):  # the router may not be up yet
                client.post(
                    f"/v1/models/{MODEL}/invocations",
                    json=payload,
                    headers={"x-rollout-key": f"user-{user}"},
                )


@pytest.mark.timeout(600)  # it may first wait up to CLOSING_S for an hour's window to close
def test_every_dashboard_query_returns_data_during_a_canary(
    home: DemoHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool("prometheus")
    router_port, manager_port, api_port, prom_port = (free_port() for _ in range(4))
    monkeypatch.setenv("ROLLOUT_MANAGER_METRICS_PORT", str(manager_port))
    settings = home.settings
    supervisor = Supervisor(settings, log_dir=tmp_path / "logs")
    digest = hashlib.sha256(SCRAPE_TOKEN.encode()).hexdigest()
    api = ProcessSpec(
        role="api",
        argv=[sys.executable, "-m", "rollout", "api", "--port", str(api_port)],
        health_url=f"http://127.0.0.1:{api_port}/healthz",
        env={"ROLLOUT_METRICS_TOKEN_SHA256": digest},
    )
    config = tmp_path / "prom" / "prometheus.yml"
    config.parent.mkdir()
    prometheus_config(config, manager_port, api_port, router_port)
    base_url = f"http://127.0.0.1:{router_port}"
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(base_url, home, stop), daemon=True)
    server: subprocess.Popen[bytes] | None = None
    manager = Manager(settings)
    try:
        # v1's requests in the newest closed monitoring window (hourly, read SETTLE_S after
        # its end), for the release monitor. That window must stay the newest until the
        # metric is read: within CLOSING_S of the next one closing, wait for it to close.
        manager.start(MODEL, "1", "prod")
        past = (clear_of_a_closing(CLOSING_S, settle_s=SETTLE_S) - SETTLE_S) // 3600 * 3600 - 3600
        records = [logged("", "baseline", "1", output=1) for _ in range(30)]
        LogWriter(manager.engine).write(
            [replace(r, ts=past + i, rollout_id=None) for i, r in enumerate(records)]
        )
        for spec in [
            *process_specs(settings, router_port=router_port, manager_interval_s=0.2),
            api,
        ]:
            supervisor.start(spec, timeout_s=120)
        server = start_prometheus(config, prom_port, tmp_path)
        manager.start(MODEL, "2", "prod", SPEC)
        sender.start()
        assert manager.watch_releases() == []  # keeps the closed window; nothing alarms
        queries = dashboard_queries()
        empty = wait_until(
            lambda: [where for where, expr in queries.items() if not query(prom_port, expr)],
            "every dashboard query to return data",
            until=lambda empty: not empty,
            interval_s=1.0,
            ignoring=(httpx.HTTPError,),
        )
        assert empty == []
        samples = query(prom_port, "max by (model, environment) (rollout_canary_weight_pct)")
        assert [(s["metric"]["environment"], s["value"][1]) for s in samples] == [("prod", "50")]
        phase = query(prom_port, "max by (phase) (rollout_phase{environment='prod'}) == 1")
        assert [s["metric"]["phase"] for s in phase] == ["progressing"]
        verdicts = query(prom_port, "max by (gate) (rollout_gate_verdict == 1)")
        assert sorted(s["metric"]["gate"] for s in verdicts) == ["error_rate", "latency"]
        window = query(prom_port, "max by (arm) (rollout_window_requests)")
        assert {s["metric"]["arm"] for s in window if float(s["value"][1]) > 0} == {
            "baseline",
            "canary",
        }
        served = query(
            prom_port,
            'sum by (arm, version, environment) (rollout_router_requests_total{arm!=""})',
        )  # the router series carry their environment (the scrape config's target label)
        assert {
            (s["metric"]["arm"], s["metric"]["version"], s["metric"]["environment"]) for s in served
        } == {("baseline", "1", "prod"), ("canary", "2", "prod")}
        (requests,) = query(prom_port, "max(rollout_monitor_window_requests)")
        assert requests["value"][1] == "30"  # the 30 records written into it
        (head,) = query(prom_port, "max(rollout_audit_head_count)")
        assert float(head["value"][1]) >= 2  # the two starts, at least
        jobs = query(prom_port, "up")
        assert {s["metric"]["job"]: s["value"][1] for s in jobs} == {
            "manager": "1",
            "api": "1",
            "router": "1",
        }
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(timeout=10)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        supervisor.stop()
        manager.close()
        for log in [*sorted((tmp_path / "logs").glob("*.log")), tmp_path / "prometheus.log"]:
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
