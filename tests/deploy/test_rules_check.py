"""The rules.yaml files deploy/ ships pass `mlwatchdog check` (exit 0), taken from where the daemon
gets them: the rendered mlwatchdog-rules ConfigMap of the base and the production overlay, and
the KServe example's ConfigMap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.manifests import BASE, EXAMPLES, PRODUCTION, load_all, one, render


def mlwatchdog() -> list[str]:
    """The installed console script, next to this interpreter."""
    script = Path(sys.executable).with_name("mlwatchdog")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlwatchdog.cli"]


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

    done = subprocess.run(
        [*mlwatchdog(), "check", *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


def test_the_kserve_example_rules_match_its_inference_service() -> None:
    docs = load_all(EXAMPLES / "kserve-inferenceservice.yaml")
    [isvc] = [d for d in docs if d["kind"] == "InferenceService"]
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap"]
    rules = yaml.safe_load(config_map["data"]["rules.yaml"])
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
    # The logger posts to the daemon's Service (deploy/kustomize/base), on its sink path.
    service = one(render(BASE), "Service")
    meta = service["metadata"]
    port = service["spec"]["ports"][0]["port"]
    assert logger == {
        "mode": "all",
        "url": f"http://{meta['name']}.{meta['namespace']}.svc:{port}/sink/kserve",
    }
    assert "canaryTrafficPercent" in isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    [pattern] = target["rollback"]["policy"]["allowed_storage_uris"]
    storage_uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert storage_uri.startswith(pattern.rstrip("*"))
