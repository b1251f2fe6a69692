"""Rollback policy and the Kubernetes settings of rules.yaml: what is allowed, what `check` says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mlwatchdog.actions.plan import Candidate
from mlwatchdog.actions.policy import refusal
from mlwatchdog.rules import config_issues
from mlwatchdog.rules.schema import LeaderElection, Policy

REPLICASET = Candidate(
    "ReplicaSet fraud-model-abc (revision 3)",
    images=("registry.example.com/fraud:1.4.0", "registry.example.com/sidecar:2"),
    labels={"app": "fraud-model", "models.example.com/approved": "true"},
    annotations={"rollout.argoproj.io/revision": "3"},
)


def test_an_empty_policy_allows_anything() -> None:
    assert refusal(Policy(), REPLICASET) == ""


def test_every_image_must_match_an_allowed_pattern() -> None:
    only_model = Policy(allowed_images=["registry.example.com/fraud:*"])
    assert "image registry.example.com/sidecar:2 matches none of" in refusal(only_model, REPLICASET)
    both = Policy(allowed_images=["registry.example.com/fraud:1.*", "registry.example.com/side*"])
    assert refusal(both, REPLICASET) == ""


def test_storage_uri_patterns_and_an_unreadable_uri() -> None:
    policy = Policy(allowed_storage_uris=["s3://models/fraud/*"])
    assert refusal(policy, Candidate("revision 1", storage_uri="s3://models/fraud/v1")) == ""
    assert "matches none" in refusal(policy, Candidate("revision 1", storage_uri="s3://tmp/x"))
    assert "could not be read" in refusal(policy, Candidate("revision 1"))


def test_approval_by_label_or_annotation() -> None:
    by_label = Policy.model_validate({"approval": {"label": "models.example.com/approved"}})
    assert refusal(by_label, REPLICASET) == ""
    by_annotation = Policy.model_validate(
        {"approval": {"annotation": "registry.example.com/stage", "value": "production"}}
    )
    why = refusal(by_annotation, REPLICASET)
    assert "annotation registry.example.com/stage=production is required, found None" in why
    fallback = Candidate("the fallback of rules.yaml", images=("x",), from_config=True)
    assert refusal(by_label, fallback) == ""  # declared in rules.yaml: nothing to approve
    with pytest.raises(ValidationError, match="exactly one of `label` or `annotation`"):
        Policy.model_validate({"approval": {"value": "true"}})


def test_leader_election_times_are_what_the_client_library_accepts() -> None:
    LeaderElection()  # the defaults
    with pytest.raises(ValidationError, match="whole seconds"):
        LeaderElection.model_validate({"retry_period": "500ms"})
    with pytest.raises(ValidationError, match=r"1\.2 x retry_period < renew_deadline"):
        LeaderElection.model_validate({"renew_deadline": "2s", "retry_period": "2s"})


def test_check_refuses_a_revision_rollback_for_kserve(tmp_path: Path) -> None:
    rules = {
        "version": 1,
        "sources": {"live": {"type": "files", "url": "/x"}},
        "targets": [
            {
                "name": "fraud",
                "workload": {"kind": "kserve", "name": "fraud-model"},
                "samples": {"source": "live"},
                "reference": {
                    "source": "live",
                    "start": "2026-01-01T00:00Z",
                    "end": "2026-01-02T00:00Z",
                },
                "columns": {"features": {"amount": "numeric"}},
                "checks": [{"name": "drift", "type": "drift", "test": "ks", "threshold": 0.01}],
                "rollback": {"to": "revision", "revision": 3},
            }
        ],
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    issues = config_issues(path)
    assert [i.path for i in issues] == ["targets[0].rollback.to"], issues
    assert issues[0].line is not None
    assert "to: revision names an Argo Rollout or Deployment revision" in issues[0].message
