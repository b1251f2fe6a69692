"""No secret anywhere it does not belong: a config full of known secret values (tokens, passwords,
URLs with credentials, a fallback's env value, storage options), a real daemon process driven
through evaluations, a rollback decision, an alert investigation with its report, an evaluation
asked for over HTTP, a failed reload and incident bundles; then every file it wrote, everything it
printed and every answer it gave is searched for those values: none may appear. The bundle, whose
config has its secrets as ***, still replays bit for bit."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from mlwatchdog.replay import list_bundles, load_bundle
from tests.e2e.daemon_process import (
    COMMAND,
    TARGET,
    DaemonProcess,
    Feeder,
    environment,
    is_ready,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(300)

SECRETS = {
    "ops token": "ops-token-9f3c2a71d0e84b56",
    "token file": "file-token-6d1e0b9a4c7f2e83",
    "basic password": "basic-pass-0a7e3d91f2c4",
    "sink path": "sink-path-secret-5b8c1e7a",
    "prometheus token": "prom-bearer-4e2a9c7d1b",
    "prometheus password": "prom-url-pass-8c1f0e",
    "prometheus header": "prom-header-7a9d3e5c2f",
    "sql password": "sql-pass-2f8e6a0c4d",
    "grafana token": "glsa_grafana-3c9e1f7a5d",
    "grafana password": "grafana-url-pass-1e6c",
    "fallback env": "env-api-key-5d0a8f3e9b",
    "storage key": "storage-key-7e1c9a3f",
    "storage secret": "storage-secret-2b6d0f8a",
}
BASIC = "Basic " + base64.b64encode(f"alertmanager:{SECRETS['basic password']}".encode()).decode()


def leaky_config(tmp_path: Path, port: int) -> Path:
    """rules.yaml of the e2e harness with a secret in every place a secret can go; some inline,
    some from the environment (`${...}`), one from a token file."""
    path = write_config(tmp_path, port)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    token_file = tmp_path / "secrets" / "token"
    token_file.parent.mkdir()
    token_file.write_text(SECRETS["token file"] + "\n")
    closed = free_port()  # nothing listens: Prometheus and Grafana fail, quoting their URLs
    daemon = rules["daemon"]
    daemon["auth"] = {
        "tokens": [
            {"name": "ops", "token": "${OPS_TOKEN}"},
            {"name": "from-file", "file": str(token_file), "roles": ["read"]},
        ],
        "basic": [{"username": "alertmanager", "password": SECRETS["basic password"]}],
        "sink_paths": [
            {"inference_service": "credit", "namespace": "models", "secret": SECRETS["sink path"]}
        ],
    }
    daemon["alerts"] = {
        "grafana": {
            "url": f"http://admin:{SECRETS['grafana password']}@127.0.0.1:{closed}",
            "token": SECRETS["grafana token"],
            "timeout": "1s",
        }
    }
    daemon["reports"] = {"path": str(tmp_path / "reports")}
    daemon["bundles"] = {"storage_options": {"key": SECRETS["storage key"]}}
    daemon["audit_log"] = str(tmp_path / "audit" / "audit.jsonl")
    daemon["audit_storage_options"] = {"secret": SECRETS["storage secret"]}
    rules["sources"]["prom"] = {
        "type": "prometheus",
        "url": f"http://watchdog:{SECRETS['prometheus password']}@127.0.0.1:{closed}",
        "bearer_token": "${PROM_TOKEN}",
        "headers": {"X-Api-Key": SECRETS["prometheus header"], "X-Scope-OrgID": "team-a"},
        "timeout": "1s",
    }
    rules["sources"]["warehouse"] = {
        "type": "sql",
        "url": f"postgresql+psycopg://watchdog:{SECRETS['sql password']}@127.0.0.1:{closed}/ml",
        "table": "serving.predictions",
    }
    rules["sources"]["training"]["storage_options"] = {
        "key": SECRETS["storage key"],
        "secret": SECRETS["storage secret"],
    }
    (target,) = rules["targets"]
    target["checks"].append(
        {"name": "errors", "type": "metric", "source": "prom", "query": "up", "above": 0.5}
    )
    target["rollback"].update(
        to="fallback",
        fallback={
            "image": "registry.example.com/credit-model:fallback",
            "env": {"MODEL_API_KEY": SECRETS["fallback env"]},
        },
    )
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def forms(secret: str) -> set[str]:
    """How a secret could be written: as it is, URL-quoted, base64 (a Basic header)."""
    return {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}


def leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() for form in forms(value) if form in text]


def test_no_secret_in_any_file_log_or_answer(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = leaky_config(tmp_path, port)
    env = environment(OPS_TOKEN=SECRETS["ops token"], PROM_TOKEN=SECRETS["prometheus token"])
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, port, log, env=env, token=SECRETS["ops token"])
    processes.append(daemon)
    answers: list[str] = []

    def ask(method: str, path: str, **kwargs: Any) -> Any:
        response = daemon.http.request(method, path, **kwargs)
        answers.append(f"{method} {path} -> {response.status_code}\n{response.text}")
        return response

    wait_for(daemon, "readiness", lambda: is_ready(daemon), timeout=60)
    feeder.drift.set()
    wait_for(daemon, "a rollback decision", lambda: daemon.events("decision: rollback"), 90)

    alert = {"alerts": [{"status": "firing", "labels": {"target": TARGET}}]}
    investigated = ask("POST", "/api/v1/alerts", json=alert, headers={"Authorization": BASIC})
    assert investigated.status_code == 200, investigated.text
    report = investigated.json()["investigated"][0]["report"]
    assert investigated.json()["investigated"][0]["annotation_error"]  # Grafana is down
    for name in ("index.html", "evidently.html", "report.json"):
        assert ask("GET", f"/reports/{report['id']}/{name}").status_code == 200
    assert ask("POST", f"/api/v1/targets/{TARGET}/evaluate", params={"report": "true"}).is_success
    for path in (
        "/api/v1/targets", f"/api/v1/targets/{TARGET}", "/targets", "/api/v1/incidents",
        "/api/v1/reports", "/api/v1/audit", "/metrics", "/readyz", "/healthz", "/openapi.json",
    ):  # fmt: skip
        assert ask("GET", path).status_code == 200, path
    detail = ask("GET", f"/api/v1/targets/{TARGET}").json()
    assert detail["config"]["rollback"]["fallback"]["env"] == {"MODEL_API_KEY": "***"}
    audit = ask("GET", "/api/v1/audit").json()
    assert audit and audit[0]["result"] == "dry_run"  # the rollback's plan, env value masked
    # A file token works, and a wrong one is refused without echoing anything.
    token_file = {"Authorization": f"Bearer {SECRETS['token file']}"}
    assert ask("GET", "/api/v1/targets", headers=token_file).status_code == 200
    wrong = {"Authorization": "Bearer nope"}
    assert ask("GET", "/api/v1/targets", headers=wrong).status_code == 401

    # A reload that fails: the new file repeats the secrets next to a mistake.
    broken = config.read_text().replace("version: 1", "version: 1\nbogus: true", 1)
    config.write_text(broken)
    refused = ask("POST", "/-/reload")
    assert refused.status_code == 409 and "bogus" in refused.text

    bundles = str(tmp_path / "bundles")
    wait_for(daemon, "a bundle of the decision", lambda: list_bundles(bundles), 30)
    shown = subprocess.run(
        [COMMAND, "status", "--url", f"http://127.0.0.1:{port}", "--output", "json"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**env, "MLWATCHDOG_TOKEN": SECRETS["ops token"]},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    answers.append(shown.stdout + shown.stderr)
    code, _ = daemon.stop()
    assert code == 0

    inputs = {config, tmp_path / "secrets" / "token"}
    scanned = 0
    for file in sorted(p for p in tmp_path.rglob("*") if p.is_file() and p not in inputs):
        found = leaks(file.read_bytes().decode("latin-1"))
        assert not found, f"{file.relative_to(tmp_path)} holds {found}"
        scanned += 1
    assert scanned > 20  # state, journal, audit, reports, bundles, the daemon's log
    for answer in answers:
        assert not leaks(answer), answer[:300]

    # The bundle of the decision records the config with its secrets as ***, and replays.
    decided = [b for b in list_bundles(str(tmp_path / "bundles")) if "decision" in b]
    assert decided
    bundle = load_bundle(decided[0])
    assert bundle.config.sources["prom"].bearer_token.reveal() == "***"  # type: ignore[union-attr]
    assert bundle.replay().same_as_recorded
