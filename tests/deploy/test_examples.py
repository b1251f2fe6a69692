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
