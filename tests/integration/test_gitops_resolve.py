"""Resolving an incident through the daemon's real HTTP app (`create_app`, served by uvicorn) and
the real `mlwatchdog resolve` command (a subprocess of the installed entry point): the Argo CD
Application whose automated sync mlwatchdog paused for the incident gets it back, in FakeKubeAPI
(validating every write against Argo CD's CRD). The pause itself is made by the real
KubeActuator (pause-sync mode), as in production.

`POST /api/v1/incidents/{incident}/resolve` needs the `operate` role: 401 without credentials,
403 with a token that lacks it. The token goes to the CLI in $MLWATCHDOG_TOKEN, never argv.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog
import yaml

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.gitops.pause_sync import PAUSED
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.rules import load_config
from tests.e2e.daemon_process import COMMAND, environment, write_config
from tests.integration.test_gitops import (
    AUTOMATED,
    INCIDENT,
    actuator,
    app_of,
    application,
    argo_managed,
    decision,
)
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.targets import kube_target
from tests.servers.limited_http import settings, thread_server

OPS = "ops-token-resolve-0123456789"
READER = "reader-token-resolve-0123456"


@dataclass
class Served:
    base: str
    kube: FakeKubeAPI
    audit: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """Argo CD's Application `fraud` with its automated sync paused by mlwatchdog for INCIDENT
    (a real pause-sync rollback), and the daemon, whose target watches that Rollout with
    `rollback.gitops.mode: pause-sync`, on a free port with two tokens."""
    with FakeKubeAPI() as kube:
        argo_managed(kube)
        kube.seed(application())
        target = kube_target(gitops={"mode": "pause-sync"})
        paused = actuator(kube, AuditLog(tmp_path / "paused-by.jsonl")).rollback(
            target, decision(target)
        )
        assert paused.ok, paused.detail
        assert "automated" not in app_of(kube)["spec"]["syncPolicy"]

        path = write_config(tmp_path, 0)
        rules = yaml.safe_load(path.read_text())
        audit = tmp_path / "audit.jsonl"
        rules["daemon"].update(
            audit_log=str(audit),
            kubernetes={
                "mode": "kubeconfig",
                "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            },
            auth={
                "tokens": [
                    {"name": "alice", "token": OPS, "roles": ["read", "operate"]},
                    {"name": "dashboard", "token": READER, "roles": ["read"]},
                ]
            },
        )
        [watched] = rules["targets"]
        watched["workload"] = {"kind": "argo-rollout", "name": "fraud-model", "namespace": "models"}
        watched["rollback"]["gitops"] = {"mode": "pause-sync"}
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        daemon = Daemon(load_config(path), structlog.get_logger(), config_path=path)
        with thread_server(create_app(daemon), settings(), "httptools+uvloop") as server:
            yield Served(f"http://127.0.0.1:{server.port}", kube, audit)
    kube.assert_all_valid()
    assert not kube.internal_errors, kube.internal_errors


def resolve_url(served: Served, incident: str = INCIDENT) -> str:
    return f"{served.base}/api/v1/incidents/{incident}/resolve"


def cli(served: Served, incident: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = environment()
    env.pop("MLWATCHDOG_TOKEN", None)
    if token is not None:
        env["MLWATCHDOG_TOKEN"] = token
    return subprocess.run(
        [COMMAND, "resolve", incident, "--url", served.base],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_resolving_over_http_restores_the_paused_sync_once(served: Served) -> None:
    ops = {"Authorization": f"Bearer {OPS}"}
    answer = httpx.post(resolve_url(served), headers=ops, timeout=30)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["incident"], body["by"]) == (INCIDENT, "alice")
    assert body["message"] == "sync restored on Application argocd/fraud"
    [result] = body["results"]
    assert (result["result"], result["object"]) == ("restored", "Application argocd/fraud")
    app = app_of(served.kube)
    assert app["spec"]["syncPolicy"]["automated"] == AUTOMATED
    assert PAUSED not in (app["metadata"].get("annotations") or {})
    [line] = [json.loads(x) for x in served.audit.read_text().splitlines()]
    assert (line["result"], line["by"], line["incident"]) == ("sync_restored", "alice", INCIDENT)

    # Twice: harmless, and says so; nothing more is written to the Application.
    writes = len(served.kube.writes())
    again = httpx.post(resolve_url(served), headers=ops, timeout=30)
    assert again.status_code == 200
    [result] = again.json()["results"]
    assert result["result"] == "not_paused" and "already restored" in result["detail"]
    assert again.json()["message"] == "nothing to restore: no sync is paused for this incident"
    assert len(served.kube.writes()) == writes
    assert OPS not in served.audit.read_text()


def test_resolve_needs_the_operate_role(served: Served) -> None:
    reader = {"Authorization": f"Bearer {READER}"}
    assert httpx.post(resolve_url(served), timeout=30).status_code == 401
    assert httpx.post(resolve_url(served), headers=reader, timeout=30).status_code == 403
    bad = {"Authorization": "Bearer not-a-token-of-this-daemon-at-all"}
    assert httpx.post(resolve_url(served), headers=bad, timeout=30).status_code == 401
    # Nothing was restored by the refused calls.
    assert "automated" not in app_of(served.kube)["spec"]["syncPolicy"]
    assert not served.audit.exists() or "sync_" not in served.audit.read_text()


def test_the_resolve_command_restores_the_sync_and_is_safe_to_repeat(served: Served) -> None:
    done = cli(served, INCIDENT, OPS)
    assert done.returncode == 0, done.stderr
    assert "fraud" in done.stdout and ": restored: Application argocd/fraud" in done.stdout
    assert "sync restored on Application argocd/fraud" in done.stdout
    assert app_of(served.kube)["spec"]["syncPolicy"]["automated"] == AUTOMATED

    again = cli(served, INCIDENT, OPS)
    assert again.returncode == 0, again.stderr
    assert ": not_paused: " in again.stdout and "already restored" in again.stdout
    assert "nothing to restore" in again.stdout


def test_the_resolve_command_without_the_right_token_says_what_to_give(served: Served) -> None:
    missing = cli(served, INCIDENT, None)
    assert missing.returncode == 1
    assert "needs credentials" in missing.stderr and "operate role" in missing.stderr
    assert "MLWATCHDOG_TOKEN" in missing.stderr

    reader = cli(served, INCIDENT, READER)
    assert reader.returncode == 1
    assert "refused this token" in reader.stderr and READER not in reader.stderr
    assert "automated" not in app_of(served.kube)["spec"]["syncPolicy"]  # still paused


def test_an_incident_nothing_was_paused_for_is_answered_by_name(served: Served) -> None:
    """An unknown incident id (a typo, another target's): nothing is changed, and the answer
    names the incident and that no sync is paused for it; the real one stays paused."""
    done = cli(served, "fraud-20991231T000000Z", OPS)
    assert done.returncode == 0, done.stderr
    assert "no sync paused by mlwatchdog for incident fraud-20991231T000000Z" in done.stdout
    assert f"(it is paused for incident {INCIDENT})" in done.stdout
    assert "nothing to restore" in done.stdout
    assert "automated" not in app_of(served.kube)["spec"]["syncPolicy"]
