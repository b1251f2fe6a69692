"""A rules.yaml target acting on the fake API's `fraud-model` workload, for actuator tests."""

from __future__ import annotations

from typing import Any

import yaml

from mlwatchdog.rules import Target, parse_config


def kube_target(kind: str = "argo-rollout", **rollback: Any) -> Target:
    """Target `fraud` on `kind` models/fraud-model, with `rollback` settings (dry_run false)."""
    target = {
        "name": "fraud",
        "workload": {"kind": kind, "name": "fraud-model", "namespace": "models"},
        "samples": {"source": "live", "window": "5m"},
        "reference": {"source": "ref"},
        "columns": {"features": {"amount": "numeric"}},
        "checks": [{"name": "drift", "type": "drift", "test": "ks", "threshold": 0.01}],
        "rollback": {"dry_run": False, **rollback},
    }
    sources = {"live": {"type": "files", "url": "/x"}, "ref": {"type": "files", "url": "/y"}}
    text = yaml.safe_dump({"version": 1, "sources": sources, "targets": [target]})
    return parse_config(text, "test.yaml").targets[0]
