"""deploy/examples/argo-rollout.yaml agrees with the in-cluster rules (deploy/kustomize/base):
the Rollout is the workload the watchdog's target acts on, its image passes the target's
rollback policy, and the AnalysisTemplate asks about that target and its real checks.
(Schema validation of the examples is in test_manifests.py.)"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import yaml

from tests.deploy.manifests import BASE, EXAMPLES, load_all, one, render


def base_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(one(render(BASE), "ConfigMap")["data"]["rules.yaml"])
    return rules


def argo_docs() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = load_all(EXAMPLES / "argo-rollout.yaml")
    return one(docs, "Rollout"), one(docs, "AnalysisTemplate")


def test_the_rollout_is_the_watched_workload_and_its_image_is_allowed() -> None:
    rollout, _ = argo_docs()
    [target] = [t for t in base_rules()["targets"] if t["workload"]["kind"] == "argo-rollout"]
    assert target["workload"]["name"] == rollout["metadata"]["name"]
    assert target["workload"]["namespace"] == rollout["metadata"]["namespace"]
    allowed = target["rollback"]["policy"]["allowed_images"]
    for container in rollout["spec"]["template"]["spec"]["containers"]:
        assert any(fnmatch.fnmatch(container["image"], p) for p in allowed), container["image"]
    # The undo needs the previous ReplicaSets to exist.
    assert rollout["spec"]["revisionHistoryLimit"] >= 2


def test_the_canary_steps_run_the_analysis_on_the_watchdog_target() -> None:
    rollout, template = argo_docs()
    target_names = {t["name"] for t in base_rules()["targets"]}
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    analyses = [s["analysis"] for s in steps if "analysis" in s]
    assert len(analyses) >= 2, "an analysis after each traffic increase"
    for analysis in analyses:
        assert [t["templateName"] for t in analysis["templates"]] == [template["metadata"]["name"]]
        args = {a["name"]: a["value"] for a in analysis["args"]}
        assert args["target"] in target_names
    # Every argument the template declares without a default is passed by the steps.
    required = {a["name"] for a in template["spec"]["args"] if "value" not in a}
    for analysis in analyses:
        assert required <= {a["name"] for a in analysis["args"]}
    # Each analysis step waits behind a pause as long as the watchdog's sample window.
    window = next(t for t in base_rules()["targets"])["samples"]["window"]
    for i, step in enumerate(steps):
        if "analysis" in step:
            assert steps[i - 1].get("pause", {}).get("duration") == window


def test_the_analysis_queries_name_real_checks_and_states() -> None:
    _, template = argo_docs()
    checks = {c["name"] for t in base_rules()["targets"] for c in t["checks"]}
    states = {"healthy", "degraded", "rolling_back", "verifying", "escalated"}
    for metric in template["spec"]["metrics"]:
        query = metric["provider"]["prometheus"]["query"]
        assert 'target="{{args.target}}"' in query
        for check in re.findall(r'check="([^"]+)"', query):
            assert check in checks, f"{metric['name']}: no check {check!r} in rules.yaml"
        for alternatives in re.findall(r'state=~?"([^"]+)"', query):
            assert set(alternatives.split("|")) <= states
        # No series (not evaluated yet) is inconclusive: neither success nor failure.
        assert "len(result) > 0" in metric["successCondition"]
        assert "len(result) > 0" in metric["failureCondition"]
        assert metric["provider"]["prometheus"]["address"] == "{{args.prometheus-address}}"


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def test_the_revert_is_a_rollback_argo_completes_at_once() -> None:
    """argo-rollouts rollout/sync.go isRollbackWithinWindow: without spec.rollbackWindow, an undo
    after full promotion is a new canary from step 0 (mlwatchdog refuses it); with a window of at
    least 1, the undo to the previous revision skips every step and analysis."""
    rollout, _ = argo_docs()
    assert rollout["spec"]["rollbackWindow"]["revisions"] >= 1
    # The window can only reach ReplicaSets that are kept.
    assert rollout["spec"]["revisionHistoryLimit"] > rollout["spec"]["rollbackWindow"]["revisions"]


def test_the_analysis_does_not_fail_during_the_watchdogs_own_revert() -> None:
    """An analysis failing while mlwatchdog reverts or verifies would abort the revert and send
    traffic back to the bad version: no metric may fail on those states."""
    _, template = argo_docs()
    for metric in template["spec"]["metrics"]:
        query = metric["provider"]["prometheus"]["query"]
        for alternatives in re.findall(r'state=~?"([^"]+)"', query):
            fighting = set(alternatives.split("|")) & {"rolling_back", "verifying"}
            assert not fighting, f"{metric['name']} fails the rollout on {fighting}"


def test_the_verify_window_covers_the_revert_and_a_clean_sample_window() -> None:
    """Recovery is judged on sample windows wholly after the revert (mlwatchdog/core/decide.py
    _verifying), and the revert takes up to progressDeadlineSeconds to be available."""
    rollout, _ = argo_docs()
    [target] = [t for t in base_rules()["targets"] if t["name"] == "fraud"]
    needed = (
        _seconds(target["samples"]["window"])
        + _seconds(target["resolve_after"])
        + int(rollout["spec"].get("progressDeadlineSeconds", 600))
    )
    assert _seconds(target["verify"]["window"]) >= needed


def test_the_flagger_canary_webhooks_call_the_daemon_with_a_valid_path_secret() -> None:
    """deploy/examples/flagger-canary.yaml: every hook calls the daemon's Service at its Flagger
    routes, with one secret that rules.yaml accepts for this Canary (a placeholder to replace).
    (Its schema, Flagger's Canary CRD, is checked in test_manifests.py.)"""
    from urllib.parse import urlsplit

    from mlwatchdog.actions.workloads.flagger import calls_mlwatchdog
    from mlwatchdog.rules.schema import Auth

    canary = one(load_all(EXAMPLES / "flagger-canary.yaml"), "Canary")
    service = next(
        o for o in render(BASE) if o["kind"] == "Service" and o["metadata"]["name"] == "mlwatchdog"
    )
    hooks = {h["type"]: h for h in canary["spec"]["analysis"]["webhooks"]}
    assert set(hooks) == {"rollback", "confirm-promotion", "rollout"}
    secrets = set()
    for kind, hook in hooks.items():
        assert calls_mlwatchdog(hook, kind), hook["url"]
        url = urlsplit(hook["url"])
        name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
        assert url.hostname == f"{name}.{namespace}.svc"
        assert url.port == service["spec"]["ports"][0]["port"]
        secrets.add(url.path.rsplit("/", 1)[1])
    [secret] = secrets
    meta = canary["metadata"]
    Auth.model_validate(
        {
            "flagger_paths": [
                {"canary": meta["name"], "namespace": meta["namespace"], "secret": secret}
            ]
        }
    )


def test_the_web_analysis_template_asks_the_daemon_with_its_secret() -> None:
    """deploy/examples/argo-analysis-web.yaml: the `web` metric calls the daemon's Service at
    /api/v1/analysis/<target>, with the token of the Secret beside it, and judges the verdict
    so that only "pass" succeeds and "inconclusive" is neither (Argo: Inconclusive). Driven
    against the daemon in tests/integration/test_analysis_provider.py."""
    from urllib.parse import urlsplit

    from mlwatchdog.core.verdict import Verdict

    docs = load_all(EXAMPLES / "argo-analysis-web.yaml")
    template, secret = one(docs, "AnalysisTemplate"), one(docs, "Secret")
    assert secret["metadata"]["namespace"] == template["metadata"]["namespace"]
    args = {a["name"]: a for a in template["spec"]["args"]}
    ref = args["token"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    service = next(
        o for o in render(BASE) if o["kind"] == "Service" and o["metadata"]["name"] == "mlwatchdog"
    )
    url = urlsplit(args["mlwatchdog-url"]["value"])
    assert url.hostname == f"mlwatchdog.{service['metadata']['namespace']}.svc"
    assert url.port == service["spec"]["ports"][0]["port"]
    [metric] = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert web["url"].startswith("{{args.mlwatchdog-url}}/api/v1/analysis/{{args.target}}?")
    assert web["jsonPath"] == "{$.verdict}"
    assert metric["successCondition"] == f'result == "{Verdict.PASS}"'
    assert metric["failureCondition"] == f'result == "{Verdict.FAIL}"'
    assert {"key": "Authorization", "value": "Bearer {{args.token}}"} in web["headers"]
