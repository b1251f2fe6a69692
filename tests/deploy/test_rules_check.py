"""The rules.yaml files deploy/ ships pass `mlwatchdog check` (exit 0), taken from where the daemon
gets them: the rendered mlwatchdog-rules ConfigMap of the base and the production overlay, and
the KServe example's ConfigMap, with the environment the pod has (the Secret's values). The KServe
example agrees with its InferenceService and with the production overlay that runs it."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import BASE, EXAMPLES, PRODUCTION, Object, load_all, one, render


def mlwatchdog() -> list[str]:
    """The installed console script, next to this interpreter."""
    script = Path(sys.executable).with_name("mlwatchdog")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlwatchdog.cli"]


def secret_env(objs: list[Object]) -> dict[str, str]:
    """The StatefulSet's variables from Secrets, each with a fresh random value (as created by
    `openssl rand -hex 24`): the values are never in git."""
    [container] = one(objs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return {
        e["name"]: secrets.token_hex(24)
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def kserve_example() -> tuple[Object, dict[str, Any]]:
    """The example's InferenceService and its rules."""
    docs = load_all(EXAMPLES / "kserve-inferenceservice.yaml")
    [isvc] = [d for d in docs if d["kind"] == "InferenceService"]
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap"]
    return isvc, yaml.safe_load(config_map["data"]["rules.yaml"])


def test_the_shipped_rules_pass_mlwatchdog_check(tmp_path: Path) -> None:
    files = []
    for name, directory in (("base", BASE), ("production", PRODUCTION)):
        config_map = one(render(directory), "ConfigMap")
        assert config_map["metadata"]["name"] == "mlwatchdog-rules"
        path = tmp_path / f"{name}-rules.yaml"
        path.write_text(config_map["data"]["rules.yaml"], encoding="utf-8")
        files.append(path)
    [kserve] = [
        d for d in load_all(EXAMPLES / "kserve-inferenceservice.yaml") if d["kind"] == "ConfigMap"
    ]
    path = tmp_path / "kserve-example-rules.yaml"
    path.write_text(kserve["data"]["rules.yaml"], encoding="utf-8")
    files.append(path)

    env = {**os.environ, **secret_env(render(PRODUCTION))}
    done = subprocess.run(
        [*mlwatchdog(), "check", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


def test_the_kserve_example_rules_match_its_inference_service() -> None:
    isvc, rules = kserve_example()
    [target] = rules["targets"]
    workload = target["workload"]
    assert workload == {
        "kind": "kserve",
        "name": isvc["metadata"]["name"],
        "namespace": isvc["metadata"]["namespace"],
    }
    source = rules["sources"][target["samples"]["source"]]
    assert source["type"] == "kserve" and source["inference_service"] == workload["name"]
    logger = isvc["spec"]["predictor"]["logger"]
    # The logger posts to the daemon's Service (deploy/kustomize/base) on its own secret path,
    # filled in when applied (a ${VAR} for envsubst here, never a value in git).
    service = next(
        s for s in render(BASE) if s["kind"] == "Service" and s["spec"]["type"] == "ClusterIP"
    )
    meta = service["metadata"]
    port = service["spec"]["ports"][0]["port"]
    assert logger["mode"] == "all" and set(logger) == {"mode", "url"}
    prefix = f"http://{meta['name']}.{meta['namespace']}.svc:{port}/sink/kserve/"
    assert logger["url"].startswith(prefix)
    assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", logger["url"].removeprefix(prefix)), logger["url"]
    # ... which daemon.auth.sink_paths accepts for this InferenceService, from the environment.
    [entry] = rules["daemon"]["auth"]["sink_paths"]
    assert (entry["namespace"], entry["inference_service"]) == (
        workload["namespace"],
        workload["name"],
    )
    assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", entry["secret"])
    assert "canaryTrafficPercent" in isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    [pattern] = target["rollback"]["policy"]["allowed_storage_uris"]
    storage_uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert storage_uri.startswith(pattern.rstrip("*"))


def test_the_production_overlay_runs_the_kserve_example() -> None:
    """Its rules hold the example's sink, path secret, sources and target as they are, and its
    pod has the example's ${VAR} from the Secret mlwatchdog-auth."""
    _, example = kserve_example()
    objs = render(PRODUCTION)
    production = yaml.safe_load(one(objs, "ConfigMap")["data"]["rules.yaml"])
    assert production["daemon"]["sink"] == example["daemon"]["sink"]
    assert production["daemon"]["auth"]["sink_paths"] == example["daemon"]["auth"]["sink_paths"]
    for name, source in example["sources"].items():
        assert production["sources"][name] == source, name
    [target] = example["targets"]
    assert target in production["targets"]
    [entry] = example["daemon"]["auth"]["sink_paths"]
    assert entry["secret"].strip("${}") in secret_env(objs)


def test_envsubst_fills_the_path_secret_into_the_logger_only() -> None:
    """The README's `envsubst '$CREDIT_SINK_PATH_SECRET' < ... | kubectl apply -f -` puts the
    value into the logger's URL and nowhere else (not into the rules' ConfigMap)."""
    if shutil.which("envsubst") is None:
        pytest.skip("envsubst (gettext) is not installed")
    value = secrets.token_hex(24)
    done = subprocess.run(
        ["envsubst", "$CREDIT_SINK_PATH_SECRET"],
        input=(EXAMPLES / "kserve-inferenceservice.yaml").read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "CREDIT_SINK_PATH_SECRET": value},
    )
    assert done.returncode == 0, done.stderr
    applied = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    original = load_all(EXAMPLES / "kserve-inferenceservice.yaml")
    [isvc] = [d for d in applied if d["kind"] == "InferenceService"]
    assert isvc["spec"]["predictor"]["logger"]["url"].endswith(f"/sink/kserve/{value}")
    assert [d for d in applied if d["kind"] != "InferenceService"] == [
        d for d in original if d["kind"] != "InferenceService"
    ]
