"""Flagger's webhooks against the real daemon app over real HTTP, called exactly as Flagger calls
them, and the flagger-canary driver through the real KubeActuator on FakeKubeAPI.

The caller below is fluxcd/flagger's, in Python:
- pkg/controller/webhook.go CallWebhook / callWebhook: POST of the CanaryWebhookPayload JSON
  (name, namespace, phase, checksum, metadata omitted when empty), Content-Type
  application/json; a status above 202 is an error whose text is the body;
- Go's net/http client sends a URL's user info as Basic credentials (Flagger's CanaryWebhook has
  no header field);
- pkg/controller/scheduler_hooks.go runRollbackHooks (any hook without error: roll back) and
  runConfirmPromotionHooks (every hook must pass, phase sent is always Progressing).
The Canary's webhooks are those of deploy/examples/flagger-canary.yaml, pointed at this server.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import structlog
import yaml

from mlwatchdog.actions.actuator import KubeActuator
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.core import Decision, DecisionKind, Health, Incident, Phase, TargetState
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import load_config, parse_config
from tests.deploy.manifests import EXAMPLES, load_all, one
from tests.e2e.daemon_process import TARGET, write_config
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.targets import kube_target
from tests.servers.limited_http import settings, thread_server

SECRET = "credit-canary-secret-0123456789"
OTHER_SECRET = "other-canary-secret-0123456789"
VIEWER = "viewer-token-0123456789abcdef"
GRAFANA = "grafana-token-0123456789abcd"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CHECKSUM = "6c8f7b5d9c"  # canaryChecksum: a hash of trackedConfigs and lastAppliedSpec


def example_canary() -> dict[str, Any]:
    return one(load_all(EXAMPLES / "flagger-canary.yaml"), "Canary")


# -------------------------------------------------------------------------- Flagger, in Python


def call_webhook(url: str, canary: dict[str, Any], phase: str, hook: dict[str, Any]) -> str | None:
    """CallWebhook: None on success, else the error (the answer's body)."""
    payload: dict[str, Any] = {
        "name": canary["metadata"]["name"],
        "namespace": canary["metadata"]["namespace"],
        "phase": phase,
        "checksum": CHECKSUM,
    }
    if hook.get("metadata"):
        payload["metadata"] = hook["metadata"]
    parts = urlsplit(url)
    auth = (parts.username or "", parts.password or "") if parts.username else None
    bare = urlunsplit(
        parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    )
    response = httpx.post(
        bare,
        content=json.dumps(payload, separators=(",", ":")),
        headers={"Content-Type": "application/json"},
        auth=auth,
        timeout=10,
    )
    return response.text if response.status_code > 202 else None


def run_rollback_hooks(canary: dict[str, Any]) -> bool:
    """runRollbackHooks: the first `rollback` hook that answers without error rolls back."""
    phase = canary.get("status", {}).get("phase", "Progressing")
    for hook in canary["spec"]["analysis"]["webhooks"]:
        if hook["type"] == "rollback" and call_webhook(hook["url"], canary, phase, hook) is None:
            return True
    return False


def run_confirm_promotion_hooks(canary: dict[str, Any]) -> bool:
    """runConfirmPromotionHooks: every `confirm-promotion` hook must pass (phase Progressing)."""
    for hook in canary["spec"]["analysis"]["webhooks"]:
        failed = call_webhook(hook["url"], canary, "Progressing", hook) is not None
        if hook["type"] == "confirm-promotion" and failed:
            return False
    return True


# ----------------------------------------------------------------------------------- the daemon


def make_daemon(tmp_path: Path, kube: FakeKubeAPI, dry_run: bool = False) -> Daemon:
    """The daemon acting for real (or in dry-run) on `kube`, which it never needs to call here;
    its scheduler never starts: the targets' states are set by the tests."""
    path = write_config(tmp_path, 0, dry_run=dry_run)
    rules = yaml.safe_load(path.read_text())
    rules["daemon"]["kubernetes"] = {
        "mode": "kubeconfig",
        "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
    }
    (target,) = rules["targets"]
    target["workload"] = {"kind": "flagger-canary", "name": "credit", "namespace": "models"}
    rules["daemon"]["auth"] = {
        "flagger_paths": [
            {"canary": "credit", "namespace": "models", "secret": SECRET},
            {"canary": "other", "namespace": "models", "secret": OTHER_SECRET},
        ],
        "tokens": [
            {"name": "dashboards", "token": VIEWER, "roles": ["read"]},
            {"name": "grafana", "token": GRAFANA, "roles": ["alerts"]},
        ],
        "basic": [{"username": "flagger", "password": "flagger-password-1234", "roles": ["read"]}],
    }
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon = Daemon(load_config(path), structlog.get_logger(), config_path=path)
    daemon.start = lambda: None  # type: ignore[method-assign]
    daemon.stop = lambda: None  # type: ignore[method-assign]
    return daemon


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        yield fake


@pytest.fixture
def daemon(tmp_path: Path, kube: FakeKubeAPI) -> Daemon:
    return make_daemon(tmp_path, kube)


@pytest.fixture
def port(daemon: Daemon) -> Iterator[int]:
    with thread_server(create_app(daemon), settings(), "httptools+uvloop") as server:
        yield server.port


def canary_at(port: int, secret: str | None = SECRET, userinfo: str = "") -> dict[str, Any]:
    """The example Canary, its webhooks pointed at this daemon (with `secret` in the path)."""
    canary = example_canary()
    for hook in canary["spec"]["analysis"]["webhooks"]:
        path = urlsplit(hook["url"]).path.rsplit("/", 1)[0]
        hook["url"] = f"http://{userinfo}127.0.0.1:{port}{path}" + (f"/{secret}" if secret else "")
    canary["status"] = {"phase": "Progressing"}
    return canary


def set_state(daemon: Daemon, phase: Phase | None) -> None:
    runner = daemon.runners[TARGET]
    if phase is None:
        runner.state = None
        return
    incident = None
    if phase is not Phase.HEALTHY:
        incident = Incident(
            f"{TARGET}-20261125T115500Z", NOW - timedelta(minutes=5), acted_at=NOW,
            reasons=("prediction_drift fired: psi 0.31 > 0.2",),
        )  # fmt: skip
    runner.state = TargetState(TARGET, phase=phase, incident=incident, evaluated_at=NOW)


def answer(canary: dict[str, Any], hook_type: str) -> httpx.Response:
    hook = next(h for h in canary["spec"]["analysis"]["webhooks"] if h["type"] == hook_type)
    body = {"name": canary["metadata"]["name"], "namespace": canary["metadata"]["namespace"],
            "phase": "Progressing", "checksum": CHECKSUM, **({"metadata": hook["metadata"]}
            if hook.get("metadata") else {})}  # fmt: skip
    return httpx.post(hook["url"], json=body, timeout=10)


# ------------------------------------------------------------------------------------ rollback


@pytest.mark.parametrize("phase", [Phase.ROLLING_BACK, Phase.VERIFYING])
def test_flagger_rolls_back_while_the_target_rolls_back(
    daemon: Daemon, port: int, phase: Phase
) -> None:
    set_state(daemon, phase)
    canary = canary_at(port)
    assert run_rollback_hooks(canary) is True
    body = answer(canary, "rollback").json()
    assert body["target"] == TARGET and body["state"] == str(phase)
    assert body["incident"] == f"{TARGET}-20261125T115500Z"
    assert body["reasons"] == ["prediction_drift fired: psi 0.31 > 0.2"]


@pytest.mark.parametrize("phase", [Phase.HEALTHY, Phase.DEGRADED, Phase.ESCALATED])
def test_no_rollback_while_the_target_has_not_decided_one(
    daemon: Daemon, port: int, phase: Phase
) -> None:
    set_state(daemon, phase)
    canary = canary_at(port)
    assert run_rollback_hooks(canary) is False
    response = answer(canary, "rollback")
    assert response.status_code == 403
    assert response.json()["reason"] == f"target {TARGET} is {phase}: no rollback called for"


def test_in_dry_run_the_rollback_is_only_said(tmp_path: Path, kube: FakeKubeAPI) -> None:
    daemon = make_daemon(tmp_path, kube, dry_run=True)
    set_state(daemon, Phase.VERIFYING)
    with thread_server(create_app(daemon), settings(), "httptools+uvloop") as server:
        canary = canary_at(server.port)
        assert run_rollback_hooks(canary) is False
        assert "dry-run" in answer(canary, "rollback").json()["reason"]


# --------------------------------------------------------------------------- confirm-promotion


def test_promotion_is_held_until_the_target_is_healthy(daemon: Daemon, port: int) -> None:
    canary = canary_at(port)
    set_state(daemon, None)  # not evaluated yet: hold, do not guess
    assert run_confirm_promotion_hooks(canary) is False
    assert answer(canary, "confirm-promotion").status_code == 503
    set_state(daemon, Phase.DEGRADED)
    assert run_confirm_promotion_hooks(canary) is False
    held = answer(canary, "confirm-promotion").json()
    assert held["reason"] == f"target {TARGET} is degraded, not healthy: hold the promotion"
    set_state(daemon, Phase.HEALTHY)
    assert run_confirm_promotion_hooks(canary) is True


def test_a_canary_no_target_watches_is_held_saying_how_to_map_it(daemon: Daemon, port: int) -> None:
    set_state(daemon, Phase.HEALTHY)
    canary = canary_at(port, OTHER_SECRET)
    canary["metadata"]["name"] = "other"
    assert run_confirm_promotion_hooks(canary) is False
    response = answer(canary, "confirm-promotion")
    assert response.status_code == 404
    assert "kind: flagger-canary, name: other" in response.json()["reason"]
    # A `target` in the webhook's metadata names the target instead.
    for hook in canary["spec"]["analysis"]["webhooks"]:
        hook["metadata"] = {"target": TARGET}
    assert run_confirm_promotion_hooks(canary) is True


# ------------------------------------------------------------------------------------ credentials


def test_without_credentials_refused_before_the_body_is_read(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = ("POST /flagger/rollback HTTP/1.1\r\nHost: mlwatchdog\r\n"
                "Content-Type: application/json\r\nContent-Length: 262144000\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode())  # and not a byte of the 250 MiB body
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")
    wrong = canary_at(port, "not-the-secret-0123456789")
    assert run_rollback_hooks(wrong) is False
    assert answer(wrong, "rollback").status_code == 401


def test_a_path_secret_answers_for_its_own_canary_only(daemon: Daemon, port: int) -> None:
    set_state(daemon, Phase.VERIFYING)
    canary = canary_at(port, OTHER_SECRET)  # the other Canary's secret, about credit
    assert run_rollback_hooks(canary) is False
    response = answer(canary, "rollback")
    assert response.status_code == 403
    assert "for Canary models/other, not models/credit" in response.json()["detail"]


def test_basic_credentials_in_the_url_and_roles(daemon: Daemon, port: int) -> None:
    set_state(daemon, Phase.VERIFYING)
    assert run_rollback_hooks(canary_at(port, None, "flagger:flagger-password-1234@")) is True
    # A token that may only post alerts cannot read a target's state.
    response = httpx.post(
        f"http://127.0.0.1:{port}/flagger/rollback",
        json={"name": "credit", "namespace": "models", "phase": "Progressing", "checksum": ""},
        headers={"Authorization": f"Bearer {GRAFANA}"},
    )
    assert response.status_code == 403 and "'read'" in response.json()["detail"]


def test_flagger_paths_secrets_are_checked_like_sink_paths() -> None:
    base = {"version": 1, "daemon": {"auth": {"flagger_paths": [
        {"canary": "credit", "namespace": "models", "secret": "short"}]}}}  # fmt: skip
    with pytest.raises(ConfigError, match="a flagger path secret needs at least 16"):
        parse_config(json.dumps(base), "rules.yaml")


# ------------------------------------------------------------------------ the driver, on the API


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        yield fake
    fake.assert_all_valid()


def rollback(api: FakeKubeAPI, tmp_path: Path, canary: dict[str, Any], **settings: Any) -> Any:
    api.seed(canary)
    target = kube_target("flagger-canary", **settings)
    kube = KubeApi(api.api_client(), timeout=5, attempts=2, sleep=lambda s: None)
    audit = AuditLog(tmp_path / "audit.jsonl")
    actuator = KubeActuator(kube, audit, structlog.get_logger(), "mlwatchdog-0", clock=lambda: NOW)
    decision = Decision(
        DecisionKind.ROLLBACK, target.name, "fraud-1", NOW, ("drift",), to="prior",
        dry_run=target.rollback.dry_run,
    )  # fmt: skip
    return actuator.rollback(target, decision), list(audit.entries()), actuator, target


def seeded_canary(phase: str) -> dict[str, Any]:
    canary = example_canary()
    canary["metadata"] = {"name": "fraud-model", "namespace": "models"}
    canary["status"] = {"phase": phase, "failedChecks": 0, "canaryWeight": 20, "iterations": 0}
    return canary


def test_the_plan_sends_nothing_and_the_audit_says_flagger_acts(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    outcome, [line], actuator, target = rollback(api, tmp_path, seeded_canary("Progressing"))
    assert outcome.ok and not api.writes()
    assert line["result"] == "skipped"
    assert (
        "Flagger rolls Canary models/fraud-model (phase Progressing) back itself" in line["detail"]
    )
    # Flagger rolled it back (scheduler.go rollback: phase Failed): healthy.
    api.mutate(
        "/apis/flagger.app/v1beta1/namespaces/models/canaries/fraud-model/status",
        lambda c: {**c, "status": {**c["status"], "phase": "Failed", "canaryWeight": 0}},
    )
    assert actuator.health(target).status is Health.HEALTHY


def test_a_canary_without_the_rollback_webhook_escalates_saying_what_to_add(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    canary = seeded_canary("Progressing")
    canary["spec"]["analysis"]["webhooks"] = [
        h for h in canary["spec"]["analysis"]["webhooks"] if h["type"] != "rollback"
    ]
    outcome, [line], _, _ = rollback(api, tmp_path, canary)
    assert not outcome.ok and line["result"] == "failed"
    assert "no `rollback` webhook calling mlwatchdog" in outcome.detail


def test_no_analysis_in_progress_means_nothing_flagger_can_roll_back(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    """scheduler.go advanceCanary asks the rollback hooks only in Progressing, Waiting and
    WaitingPromotion."""
    outcome, _, _, _ = rollback(api, tmp_path, seeded_canary("Succeeded"))
    assert not outcome.ok and "is in phase Succeeded" in outcome.detail


def test_rules_yaml_refuses_a_fallback_for_a_canary() -> None:
    with pytest.raises(ConfigError, match="Flagger rolls a Canary back to its primary only"):
        kube_target("flagger-canary", to="fallback", fallback={"image": "x:1"})
