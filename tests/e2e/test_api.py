"""The daemon's HTTP API and the alert webhook, end to end: `mlwatchdog run` as a real process,
live samples that start drifting, a Grafana alert that makes it investigate at once (a report
with mlwatchdog's page and Evidently's, linked in the answer and announced as a Grafana
annotation on a stand-in Grafana server), `mlwatchdog status`, and a schemathesis run against
the live server's OpenAPI schema (no 5xx, no response outside its schema)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.daemon_process import (
    COMMAND,
    TARGET,
    DaemonProcess,
    Feeder,
    is_ready,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(300)

TOKEN = "s3cret-webhook-token"  # Grafana's: it may post alerts, nothing else
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPS_TOKEN = "0p3rator-token-of-the-ops-team"  # every role
VIEWER_TOKEN = "v1ewer-token-read-only"


class StandInGrafana:
    """Records what is POSTed to /api/annotations, answering as Grafana does."""

    def __init__(self) -> None:
        self.annotations: list[tuple[dict[str, Any], str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.annotations.append((json.loads(body), self.headers.get("Authorization")))
                answer = json.dumps({"id": len(outer.annotations), "message": "Annotation added"})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def grafana() -> Iterator[StandInGrafana]:
    server = StandInGrafana()
    yield server
    server.close()


def grafana_alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    """A Grafana unified-alerting webhook body (contact point of type webhook)."""
    alert = {
        "status": status,
        "labels": {"alertname": "CreditModelErrorRate", "grafana_folder": "ML", **labels},
        "annotations": {"summary": "error rate above 2% for 5m"},
        "startsAt": "2026-11-25T11:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "https://grafana.example.com/alerting/grafana/abc/view",
        "fingerprint": "a1b2c3d4e5f60718",
        "silenceURL": "https://grafana.example.com/alerting/silence/new",
        "dashboardURL": "https://grafana.example.com/d/ml",
        "panelURL": "https://grafana.example.com/d/ml?viewPanel=2",
        "values": {"B": 0.031, "C": 1},
        "valueString": "[ var='B' labels={} value=0.031 ]",
    }
    return {
        "receiver": "mlwatchdog",
        "status": status,
        "orgId": 1,
        "alerts": [alert],
        "groupLabels": {"alertname": "CreditModelErrorRate"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "https://grafana.example.com/",
        "version": "1",
        "groupKey": '{}:{alertname="CreditModelErrorRate"}',
        "truncatedAlerts": 0,
        "title": f"[{status.upper()}:1] CreditModelErrorRate (ML)",
        "state": "alerting",
        "message": "**Firing**",
    }


def alertmanager_alert(status: str, **labels: str) -> dict[str, Any]:
    """An Alertmanager webhook_config body (version 4)."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ModelDrift"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "mlwatchdog",
        "groupLabels": {"alertname": "ModelDrift"},
        "commonLabels": {"alertname": "ModelDrift", **labels},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "ModelDrift", **labels},
                "annotations": {},
                "startsAt": "2026-11-25T11:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "0123456789abcdef",
            }
        ],
    }


def api_config(tmp_path: Path, port: int, grafana_url: str) -> Path:
    path = write_config(tmp_path, port)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    rules["daemon"]["alerts"] = {"grafana": {"url": grafana_url, "token": "glsa_test"}}
    rules["daemon"]["auth"] = {
        "tokens": [
            {"name": "grafana", "token": TOKEN, "roles": ["alerts"]},
            {"name": "ops", "token": OPS_TOKEN},
            {"name": "viewer", "token": VIEWER_TOKEN, "roles": ["read"]},
        ]
    }
    rules["daemon"]["reports"] = {"path": str(tmp_path / "reports"), "keep": 50}
    rules["targets"][0]["alerts"] = {"labels": {"model": TARGET}}
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_api_webhook_reports_status_and_schema(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder, grafana: StandInGrafana
) -> None:
    port = free_port()
    config = api_config(tmp_path, port, grafana.url)
    daemon = DaemonProcess(config, port, tmp_path / "d.log", token=OPS_TOKEN)
    processes.append(daemon)
    wait_for(daemon, "readiness", lambda: is_ready(daemon), timeout=60)

    # Only /healthz, /readyz and /metrics answer without credentials.
    anonymous = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert anonymous.get(path).status_code == 200, path
    for method, path in [
        ("GET", "/api/v1/targets"), ("GET", f"/api/v1/targets/{TARGET}"), ("GET", "/targets"),
        ("GET", "/api/v1/incidents"), ("GET", "/api/v1/reports"), ("GET", "/api/v1/audit"),
        ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/reports/x/index.html"),
        ("GET", "/"), ("GET", "/reports/"),
        ("POST", f"/api/v1/targets/{TARGET}/evaluate"), ("POST", "/-/reload"),
        ("POST", "/api/v1/alerts"), ("GET", f"/api/v1/analysis/{TARGET}"),
    ]:  # fmt: skip
        answer = anonymous.request(method, path)
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert answer.headers["www-authenticate"].startswith("Bearer")
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    assert anonymous.get("/api/v1/targets", headers=viewer).status_code == 200
    refused = anonymous.post(f"/api/v1/targets/{TARGET}/evaluate", headers=viewer)
    assert refused.status_code == 403 and "operate" in refused.json()["detail"]
    assert anonymous.get("/api/v1/targets", headers=AUTH).status_code == 403  # alerts only
    assert anonymous.post("/-/reload", headers=AUTH).status_code == 403

    listed = daemon.http.get("/api/v1/targets").json()
    assert [t["name"] for t in listed] == [TARGET]
    assert listed[0]["phase"] == "healthy"
    kinds = {c["name"]: c["kind"] for c in listed[0]["checks"]}
    assert kinds == {"feature_drift": "drift", "prediction_drift": "drift", "channel_mix": "drift"}
    missing = daemon.http.get("/api/v1/targets/nope")
    assert missing.status_code == 404 and TARGET in missing.json()["detail"]

    # The webhook wants its token; nothing is evaluated without it.
    assert anonymous.post("/api/v1/alerts", json=grafana_alert(model=TARGET)).status_code == 401

    feeder.drift.set()
    wait_for(
        daemon,
        "drift in the window",
        lambda: daemon.http.get(f"/api/v1/targets/{TARGET}").json()["phase"] == "degraded",
        timeout=60,
    )
    # Report links never come from the Host header the caller chose (no external_url: relative).
    answer = daemon.http.post(
        "/api/v1/alerts",
        json=grafana_alert(model=TARGET),
        headers={**AUTH, "Host": "evil.example.com"},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    [investigation] = result["investigated"]
    assert investigation["target"] == TARGET and result["unmatched"] == 0
    assert investigation["annotation_error"] is None
    report = investigation["report"]
    assert report["url"] == f"/reports/{report['id']}/"
    assert report["evidently"] is True

    page = daemon.http.get(report["url"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sections = ("decision", "checks", "timeline", "plots", "columns", "metrics", "history",
                "actions", "alerts")  # fmt: skip
    for section in sections:
        assert f'id="{section}"' in page.text
    assert "CreditModelErrorRate" in page.text  # the alert that asked for it
    assert '<span class="phase degraded">degraded</span>' in page.text
    assert "alert" in daemon.http.get("/reports/").text  # listed, with why it was written
    evidently = daemon.http.get(report["url"] + "evidently.html")
    assert evidently.status_code == 200 and len(evidently.content) > 100_000
    assert daemon.http.get(f"/reports/{report['id']}/../../rules.yaml").status_code == 404

    [(annotation, authorization)] = grafana.annotations
    assert authorization == "Bearer glsa_test"
    assert f"target:{TARGET}" in annotation["tags"] and report["url"] in annotation["text"]

    # Alertmanager's shape: resolved alerts investigate nothing; unknown labels match nothing.
    resolved = daemon.http.post(
        "/api/v1/alerts", json=alertmanager_alert("resolved", model=TARGET), headers=AUTH
    ).json()
    assert resolved["investigated"] == [] and resolved["message"] == "no firing alerts"
    stranger = daemon.http.post(
        "/api/v1/alerts", json=alertmanager_alert("firing", model="other"), headers=AUTH
    ).json()
    assert stranger["investigated"] == [] and stranger["unmatched"] == 1
    assert "no target matched" in stranger["message"]
    firing = daemon.http.post(
        "/api/v1/alerts", json=alertmanager_alert("firing", model=TARGET), headers=AUTH
    ).json()
    assert [i["target"] for i in firing["investigated"]] == [TARGET]

    evaluated = daemon.http.post(f"/api/v1/targets/{TARGET}/evaluate", params={"report": "true"})
    assert evaluated.status_code == 200
    detail = evaluated.json()["target"]
    assert {c["column"] for c in detail["columns"]} >= {"age", "income"}
    assert detail["config"]["name"] == TARGET
    reports = daemon.http.get("/api/v1/reports").json()
    # Two alerts and one request asked for reports (decisions write their own as well).
    asked = [r for r in reports if r["trigger"] in ("alert", "on demand")]
    assert [r["trigger"] for r in asked] == ["on demand", "alert", "alert"]
    assert asked[0]["id"] == evaluated.json()["report"]["id"]
    assert all(r["trigger"] in ("decision", "escalation") for r in reports if r not in asked)

    incidents = daemon.http.get("/api/v1/incidents", params={"target": TARGET}).json()
    assert incidents and incidents[0]["target"] == TARGET
    assert any(e["kind"] == "phase" and e["phase"] == "degraded" for e in incidents[0]["events"])

    without = subprocess.run(
        [COMMAND, "status", "--url", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=30, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert without.returncode == 1 and "MLWATCHDOG_TOKEN" in without.stderr
    shown = subprocess.run(
        [COMMAND, "status", "--url", f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=30, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "MLWATCHDOG_TOKEN": VIEWER_TOKEN},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert TARGET in shown.stdout and "feature_drift" in shown.stdout
    assert any(p in shown.stdout for p in ("degraded", "rolling_back", "verifying", "escalated"))

    reloaded = daemon.http.post("/-/reload")
    assert reloaded.status_code == 200 and reloaded.json()["status"] == "reloaded"

    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    run = subprocess.run(
        [
            schemathesis, "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples", "15", "--seed", "20261125",
            "-H", f"Authorization: Bearer {OPS_TOKEN}",
            "--request-timeout", "30",
        ],
        capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
