"""GitOps awareness (issue 13) through the real KubeActuator, over real HTTP with the real
`kubernetes` client, against FakeKubeAPI validating every write against the vendored CRDs:
Argo CD's Application (argoproj/argo-cd manifests/crds/application-crd.yaml), Flux's Kustomization
(fluxcd/kustomize-controller config/crd/bases) and HelmRelease (fluxcd/helm-controller
config/crd/bases); see tests/kube/crds/SOURCES.md for the commits.

Argo CD's self-heal is emulated as upstream describes it (argo-cd
pkg/apis/application/v1alpha1/types.go SyncPolicyAutomated.SelfHeal: "revert resources back to
their desired state upon modification in the cluster"): a write that changes a tracked Rollout's
template while the Application's automated sync has selfHeal on is put back to Git's template.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from mlwatchdog.actions import gitops
from mlwatchdog.actions.actuator import KubeActuator
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.gitops.pause_sync import PAUSED
from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import Target
from tests.kube import acting
from tests.kube.acting import INCIDENT, NOW, decision
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.objects import argo_promoted, kserve_canary
from tests.kube.targets import kube_target

ROLLOUT = "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/fraud-model"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/models/inferenceservices/fraud-model"
APP = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/fraud"
EVENTS = "/api/v1/namespaces/models/events"
AUTOMATED = {"prune": True, "selfHeal": True}
FALLBACK: dict[str, Any] = {"to": "fallback", "fallback": {"storage_uri": "s3://models/fraud/v1"}}


def actuator(api: FakeKubeAPI, audit: AuditLog) -> KubeActuator:
    return acting.actuator(api, audit, attempts=2, server_dry_run=False)


def application(
    name: str = "fraud", ns: str = "argocd", automated: dict[str, Any] | None = AUTOMATED
) -> dict[str, Any]:
    sync = {"automated": dict(automated)} if automated is not None else {}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://git.example.com/ml/manifests.git",
                "path": "models/fraud",
                "targetRevision": "main",
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "models"},
            "syncPolicy": {**sync, "syncOptions": ["CreateNamespace=false"]},
        },
    }


def flux_object(kind: str, name: str = "fraud", ns: str = "flux-system") -> dict[str, Any]:
    if kind == "Kustomization":
        return {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "interval": "5m",
                "path": "./models/fraud",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "manifests"},
            },
        }
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "interval": "5m",
            "chart": {
                "spec": {
                    "chart": "fraud-model",
                    "sourceRef": {"kind": "HelmRepository", "name": "models"},
                }
            },
        },
    }


def argo_managed(
    api: FakeKubeAPI,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A promoted Rollout (1.5.0 over 1.4.0) carrying Argo CD's tracking; returns Git's template."""
    seed = argo_promoted(rollback_window=1)
    meta = seed.rollout["metadata"]
    meta.setdefault("labels", {}).update(labels or {"app.kubernetes.io/instance": "fraud"})
    meta.setdefault("annotations", {}).update(annotations or {})
    api.seed(seed.objects)
    return copy.deepcopy(seed.rollout["spec"]["template"])


def install_self_heal(api: FakeKubeAPI, git_template: dict[str, Any], app_path: str = APP) -> None:
    """Argo CD with automated sync and selfHeal: a changed template is put back to Git's."""

    def self_heal(fake: FakeKubeAPI, after: Any, before: Any) -> None:
        if after is None or after["spec"]["template"] == git_template:
            return
        ns, name = app_path.split("/")[-3], app_path.split("/")[-1]
        app = fake.get("argoproj.io/v1alpha1", "applications", ns, name)
        automated = ((app or {}).get("spec") or {}).get("syncPolicy", {}).get("automated") or {}
        if automated.get("selfHeal") and automated.get("enabled") is not False:
            fake.mutate(
                ROLLOUT, lambda obj: {**obj, "spec": {**obj["spec"], "template": git_template}}
            )

    api.on_write("rollouts", self_heal)


def image_of(api: FakeKubeAPI) -> str:
    rollout = api.get("argoproj.io/v1alpha1", "rollouts", "models", "fraud-model")
    assert rollout is not None
    return str(rollout["spec"]["template"]["spec"]["containers"][0]["image"])


def app_of(api: FakeKubeAPI, ns: str = "argocd", name: str = "fraud") -> dict[str, Any]:
    app = api.get("argoproj.io/v1alpha1", "applications", ns, name)
    assert app is not None
    return app


def events(api: FakeKubeAPI) -> list[dict[str, Any]]:
    return [r.body for r in api.requests if r.method == "POST" and r.path == EVENTS]


# ------------------------------------------------------------------ detection and refusal


def test_an_argo_cd_tracked_rollout_is_not_patched_without_a_gitops_setting(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    argo_managed(api)
    api.seed(application())
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert not outcome.ok and outcome.refused
    assert "managed by Argo CD (Application argocd/fraud" in outcome.detail
    assert "self-heal would put a patched object back" in outcome.detail
    assert "rollback.gitops" in outcome.detail and "mode: pause-sync" in outcome.detail
    assert api.patches() == []
    assert image_of(api) == "registry.example.com/fraud:1.5.0"
    [line] = list(audit.entries())
    assert line["result"] == "refused" and line["gitops"]["controller"] == "argocd"
    [event] = events(api)
    assert event["reason"] == "MlwatchdogRollbackRefused" and event["type"] == "Warning"


def test_a_flux_managed_inference_service_is_refused_in_dry_run_too(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    seed = kserve_canary()
    seed.isvc["metadata"]["labels"] = {
        "kustomize.toolkit.fluxcd.io/name": "fraud",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    api.seed(seed.objects)
    target = kube_target("kserve", dry_run=True, **FALLBACK)
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert outcome.refused and outcome.dry_run
    assert "managed by Flux (Kustomization flux-system/fraud" in outcome.detail
    assert api.writes() == []  # dry-run: no Event either
    assert [line["result"] for line in audit.entries()] == ["refused"]


def test_mode_patch_patches_anyway_and_self_heal_then_undoes_it(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    """Why the refusal exists: patched under self-heal, the revert does not hold."""
    git_template = argo_managed(api)
    api.seed(application())
    install_self_heal(api, git_template)
    target = kube_target(gitops={"mode": "patch"})
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert outcome.ok, outcome.detail
    assert [p.path for p in api.patches()] == [ROLLOUT]
    assert image_of(api) == "registry.example.com/fraud:1.5.0"  # put back by self-heal
    [line] = list(audit.entries())
    assert any("patched anyway" in note for note in line["notes"])


# ------------------------------------------------------------------------------ pause-sync


def test_pause_sync_switches_self_heal_off_first_so_the_revert_holds(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    git_template = argo_managed(api)
    api.seed(application())
    install_self_heal(api, git_template)
    target = kube_target(gitops={"mode": "pause-sync"})
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert outcome.ok, outcome.detail
    assert [p.path for p in api.patches()] == [APP, ROLLOUT]
    assert image_of(api) == "registry.example.com/fraud:1.4.0"  # held: nothing healed it back
    app = app_of(api)
    assert "automated" not in app["spec"]["syncPolicy"]
    assert app["spec"]["syncPolicy"]["syncOptions"] == ["CreateNamespace=false"]  # untouched
    note = json.loads(app["metadata"]["annotations"][PAUSED])
    assert note["was"] == {"automated": AUTOMATED}
    assert (note["incident"], note["target"], note["by"]) == (INCIDENT, "fraud", "mlwatchdog-0")
    assert note["at"] == NOW.isoformat() and "drift fired" in note["why"]
    [line] = list(audit.entries())
    assert line["result"] == "sent" and [r["path"] for r in line["requests"]] == [APP, ROLLOUT]

    # Resolving the incident puts the automated block back exactly, and says so.
    [result] = gitops.resolve(actuator(api, audit), [target], INCIDENT, "alice")
    assert result["result"] == "restored" and result["object"] == "Application argocd/fraud"
    app = app_of(api)
    assert app["spec"]["syncPolicy"]["automated"] == AUTOMATED
    assert PAUSED not in (app["metadata"].get("annotations") or {})
    last = list(audit.entries())[-1]
    assert (last["result"], last["by"], last["incident"]) == ("sync_restored", "alice", INCIDENT)

    # Twice: nothing more is written, and the answer says why.
    patches = len(api.patches())
    [again] = gitops.resolve(actuator(api, audit), [target], INCIDENT, "alice")
    assert again["result"] == "not_paused" and "already restored" in again["detail"]
    assert len(api.patches()) == patches


def test_a_retried_revert_does_not_record_the_pause_twice(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    """A 409 on the Rollout after the pause: re-read, re-plan; the pause (and what the sync was)
    is kept from the first time, not overwritten with 'was: nothing'."""
    argo_managed(api)
    api.seed(application())
    api.conflict_once(ROLLOUT + "$")
    target = kube_target(gitops={"mode": "pause-sync"})
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert outcome.ok, outcome.detail
    assert [(p.path, p.status) for p in api.patches()] == [
        (APP, 200), (ROLLOUT, 409), (ROLLOUT, 200)
    ]  # fmt: skip
    note = json.loads(app_of(api)["metadata"]["annotations"][PAUSED])
    assert note["was"] == {"automated": AUTOMATED}


def test_resolve_leaves_a_sync_someone_re_enabled_by_hand(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    argo_managed(api)
    api.seed(application())
    target = kube_target(gitops={"mode": "pause-sync"})
    assert actuator(api, audit).rollback(target, decision(target)).ok
    by_hand = {"prune": False, "selfHeal": True}
    api.mutate(
        APP,
        lambda app: {**app, "spec": {**app["spec"], "syncPolicy": {"automated": by_hand}}},
    )

    [result] = gitops.resolve(actuator(api, audit), [target], INCIDENT, "bob")
    assert result["result"] == "already_enabled" and "re-enabled by hand" in result["detail"]
    app = app_of(api)
    assert app["spec"]["syncPolicy"]["automated"] == by_hand  # the person's choice stands
    assert PAUSED not in (app["metadata"].get("annotations") or {})


def test_an_application_outside_argocd_is_found_from_the_tracking_id(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    """Tracking by annotation, app in another namespace: `<ns>_<app>:<group>/<kind>:<ns>/<name>`."""
    tracking = "team-ml_fraud:argoproj.io/Rollout:models/fraud-model"
    argo_managed(
        api, labels={"team": "ml"}, annotations={"argocd.argoproj.io/tracking-id": tracking}
    )
    api.seed(application(ns="team-ml"))
    target = kube_target(gitops={"mode": "pause-sync"})
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert outcome.ok, outcome.detail
    assert "automated" not in app_of(api, "team-ml")["spec"]["syncPolicy"]


def test_an_application_that_is_not_there_fails_saying_which_setting_to_check(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    argo_managed(api)
    api.seed(application(ns="gitops"))
    target = kube_target(gitops={"mode": "pause-sync"})
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert not outcome.ok and not outcome.refused
    assert "Application argocd/fraud" in outcome.detail and "not found" in outcome.detail
    assert "rollback.gitops.argocd_namespace" in outcome.detail
    assert api.patches() == []


@pytest.mark.parametrize("kind", ["Kustomization", "HelmRelease"])
def test_flux_is_suspended_for_the_revert_and_resumed_on_resolve(
    api: FakeKubeAPI, audit: AuditLog, kind: str
) -> None:
    group = "kustomize" if kind == "Kustomization" else "helm"
    plural = "kustomizations" if kind == "Kustomization" else "helmreleases"
    version = "v1" if kind == "Kustomization" else "v2"
    seed = kserve_canary()
    seed.isvc["metadata"]["labels"] = {
        f"{group}.toolkit.fluxcd.io/name": "fraud",
        f"{group}.toolkit.fluxcd.io/namespace": "flux-system",
    }
    api.seed(seed.objects, flux_object(kind))
    target = kube_target("kserve", gitops={"mode": "pause-sync"}, **FALLBACK)
    outcome = actuator(api, audit).rollback(target, decision(target))

    flux_path = f"/apis/{group}.toolkit.fluxcd.io/{version}/namespaces/flux-system/{plural}/fraud"
    assert outcome.ok, outcome.detail
    assert [p.path for p in api.patches()] == [flux_path, ISVC]
    api_version = f"{group}.toolkit.fluxcd.io/{version}"
    flux = api.get(api_version, plural, "flux-system", "fraud")
    assert flux is not None and flux["spec"]["suspend"] is True
    assert json.loads(flux["metadata"]["annotations"][PAUSED])["was"] == {"suspend": False}

    [result] = gitops.resolve(actuator(api, audit), [target], INCIDENT, "carol")
    assert result["result"] == "restored"
    flux = api.get(api_version, plural, "flux-system", "fraud")
    assert flux is not None and flux["spec"]["suspend"] is False


def test_dry_run_logs_the_pause_and_changes_nothing(api: FakeKubeAPI, audit: AuditLog) -> None:
    argo_managed(api)
    api.seed(application())
    target = kube_target(gitops={"mode": "pause-sync"}, dry_run=True)
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert outcome.ok and outcome.dry_run
    assert api.writes() == []
    [line] = list(audit.entries())
    assert line["result"] == "dry_run"
    assert line["requests"][0]["path"] == APP
    assert line["requests"][0]["body"]["spec"] == {"syncPolicy": {"automated": None}}


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("gitops_setting", "message"),
    [
        (
            {"mode": "git", "repo": "https://g.example.com/ml/m.git"},
            "mode git needs path, provider",
        ),
        ({"mode": "pause-sync", "token": "x" * 20}, "rollback.gitops.token is only for mode git"),
        (
            {
                "mode": "git",
                "path": "/etc/passwd",
                "repo": "https://g/x.git",
                "provider": "github",
                "token": "t" * 20,
            },
            "relative to the repository",
        ),
        ({"mode": "self-heal"}, "gitops.mode"),
    ],
)
def test_gitops_settings_are_validated_naming_the_key(
    gitops_setting: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        kube_target(gitops=gitops_setting)
    assert message in str(info.value)


# ------------------------------------------------------------------------------ git mode

MANIFEST = """\
apiVersion: v1
kind: Service
metadata:
  name: fraud-model
spec:
  selector: {app: fraud-model}
  ports: [{port: 80}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: fraud-model
spec:
  template:
    spec:
      containers:
        - name: fraud-model
          image: "registry.example.com/fraud:1.5.0"  # bumped by CI
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: fraud-model
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: s3://models/fraud/v2
"""
PATH = "models/fraud/manifests.yaml"
TOKEN = "ghp_0123456789abcdefTOKEN"
BRANCH = "mlwatchdog/revert-fraud-20261125T115500Z"


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[Any]:
    """The manifests repository over smart HTTP (`git http-backend`), private: every request
    needs TOKEN, as GitHub and GitLab ask it of git (HTTP Basic, the token as password)."""
    from tests.servers.git_server import GitHttpServer

    server = GitHttpServer(tmp_path / "git", TOKEN)
    server.root.mkdir()
    server.init({PATH: MANIFEST})
    with server:
        yield server


def git_target(server: Any, prs: Any, provider: str, **rollback: Any) -> Target:
    setting = {
        "mode": "git", "repo": server.url, "branch": "main", "path": PATH,
        "provider": provider, "api_url": prs.url, "project": "ml/manifests", "token": TOKEN,
    }  # fmt: skip
    return kube_target(rollback.pop("kind", "argo-rollout"), gitops=setting, **rollback)


def test_git_mode_commits_the_revert_and_opens_a_github_pull_request_once(
    api: FakeKubeAPI, audit: AuditLog, git_server: Any, tmp_path: Path
) -> None:
    from tests.servers.pull_requests import PullRequestAPI

    argo_managed(api)
    with PullRequestAPI("github", TOKEN, git_server.bare, "ml/manifests") as prs:
        target = git_target(git_server, prs, "github")
        outcome = actuator(api, audit).rollback(target, decision(target))

        assert outcome.ok and not outcome.dry_run, outcome.detail
        assert "https://github.example.com/ml/manifests/pull/1" in outcome.detail
        assert [p.path for p in api.patches()] == []  # the cluster is left to Argo CD
        assert git_server.branches() == ["main", BRANCH]
        reverted = git_server.show(BRANCH, PATH)
        assert reverted == MANIFEST.replace("fraud:1.5.0", "fraud:1.4.0")  # comment, quotes kept
        assert git_server.show("main", PATH) == MANIFEST
        [pull] = prs.pulls
        assert (pull["head"]["ref"], pull["base"]["ref"]) == (BRANCH, "main")
        assert INCIDENT in pull["title"] and "registry.example.com/fraud:1.4.0" in pull["body"]
        assert prs.invalid == []

        # Again (a retry, another replica): the pull request is found, nothing new is made.
        again = actuator(api, audit).rollback(target, decision(target))
        assert again.ok and "already exists" in again.detail
        assert len(prs.pulls) == 1 and git_server.branches() == ["main", BRANCH]

    results = [line["result"] for line in audit.entries()]
    assert results == ["sent", "skipped"]
    assert TOKEN not in (tmp_path / "audit.jsonl").read_text()
    # The push went through with the token (the repository refuses anything else).
    assert ("POST", "/ml/manifests.git/git-receive-pack", "right") in git_server.authorizations
    [event] = events(api)
    assert event["reason"] == "MlwatchdogRollback" and "pull/1" in event["message"]


def test_git_mode_opens_a_gitlab_merge_request_for_an_inference_service(
    api: FakeKubeAPI, audit: AuditLog, git_server: Any
) -> None:
    from tests.servers.pull_requests import PullRequestAPI

    seed = kserve_canary()
    seed.isvc["metadata"]["labels"] = {"app.kubernetes.io/instance": "fraud"}
    api.seed(seed.objects)
    with PullRequestAPI("gitlab", TOKEN, git_server.bare, "ml/manifests") as prs:
        target = git_target(git_server, prs, "gitlab", kind="kserve", **FALLBACK)
        outcome = actuator(api, audit).rollback(target, decision(target))

        assert outcome.ok, outcome.detail
        assert "/-/merge_requests/1" in outcome.detail
        assert git_server.show(BRANCH, PATH) == MANIFEST.replace(
            "storageUri: s3://models/fraud/v2", "storageUri: s3://models/fraud/v1"
        )
        [mr] = prs.pulls
        assert (mr["source_branch"], mr["target_branch"]) == (BRANCH, "main")
        assert prs.invalid == []
    assert api.patches() == []


def test_git_mode_dry_run_logs_the_diff_and_pushes_nothing(
    api: FakeKubeAPI, audit: AuditLog, git_server: Any
) -> None:
    from tests.servers.pull_requests import PullRequestAPI

    argo_managed(api)
    with PullRequestAPI("github", TOKEN, git_server.bare, "ml/manifests") as prs:
        target = git_target(git_server, prs, "github", dry_run=True)
        outcome = actuator(api, audit).rollback(target, decision(target))
        assert outcome.ok and outcome.dry_run and f"would commit to {BRANCH}" in outcome.detail
        assert prs.pulls == [] and [m for m, _, _ in prs.requests] == ["GET"]
    assert git_server.branches() == ["main"]
    [line] = list(audit.entries())
    assert line["result"] == "dry_run"
    assert '+          image: "registry.example.com/fraud:1.4.0"' in line["git"]["diff"]


def test_a_token_the_provider_refuses_fails_saying_what_to_grant(
    api: FakeKubeAPI, audit: AuditLog, git_server: Any, tmp_path: Path
) -> None:
    from tests.servers.pull_requests import PullRequestAPI

    argo_managed(api)
    with PullRequestAPI("github", "another-token-entirely", git_server.bare, "ml/manifests") as prs:
        target = git_target(git_server, prs, "github")
        outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok and "HTTP 401" in outcome.detail
    assert "rollback.gitops.token" in outcome.detail and "pull requests: write" in outcome.detail
    assert TOKEN not in (tmp_path / "audit.jsonl").read_text()


# ------------------------------------------------------------------------------ the git token


@pytest.mark.parametrize("public_read", [False, True], ids=["private", "public-read"])
def test_a_git_token_the_repository_refuses_fails_clearly_without_showing_it(
    api: FakeKubeAPI, audit: AuditLog, tmp_path: Path, public_read: bool
) -> None:
    """A private repository refuses the clone, a public one the push: either way the error says
    the token was refused and shows neither the token nor its Basic form."""
    from tests.servers.git_server import GitHttpServer
    from tests.servers.pull_requests import PullRequestAPI

    argo_managed(api)
    server = GitHttpServer(tmp_path / "git", "the-token-git-wants-000", public_read=public_read)
    server.root.mkdir()
    server.init({PATH: MANIFEST})
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    with server, PullRequestAPI("github", TOKEN, server.bare, "ml/manifests") as prs:
        target = git_target(server, prs, "github")
        with capture_logs() as logs:
            outcome = actuator(api, audit).rollback(target, decision(target))

        assert not outcome.ok and not outcome.dry_run
        assert "refused rollback.gitops.token" in outcome.detail
        assert "HTTP authentication failed" in outcome.detail
        assert ("git push" if public_read else "git ls-remote") in outcome.detail
        assert {seen for _, _, seen in server.authorizations} == {"wrong"}  # it was sent
        assert server.refused
        if public_read:  # read freely, refused where it writes
            assert all("receive-pack" in path for _, path in server.refused)
        assert server.branches() == ["main"] and prs.pulls == []
    shown = outcome.detail + (tmp_path / "audit.jsonl").read_text() + repr(logs)
    assert TOKEN not in shown and basic not in shown
    [line] = list(audit.entries())
    assert line["result"] == "failed"


def test_the_git_token_is_in_no_process_argument_and_no_url(
    api: FakeKubeAPI, audit: AuditLog, git_server: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Every git process mlwatchdog starts is recorded (a `git` first on PATH that writes its
    arguments, then runs the real one): the push succeeds, and neither the token nor its Basic
    form is in any of them; only the environment carries it."""
    from tests.servers.pull_requests import PullRequestAPI

    real = shutil.which("git")
    assert real is not None
    spy = tmp_path / "bin"
    spy.mkdir()
    log = tmp_path / "git-argv.log"
    wrapper = spy / "git"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\0" "$@" >> {log}\nprintf "\\001" >> {log}\nexec {real} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{spy}{os.pathsep}{os.environ['PATH']}")
    argo_managed(api)
    with PullRequestAPI("github", TOKEN, git_server.bare, "ml/manifests") as prs:
        target = git_target(git_server, prs, "github")
        outcome = actuator(api, audit).rollback(target, decision(target))
        assert outcome.ok, outcome.detail

    calls = [call.split("\0")[:-1] for call in log.read_text().split("\1")[:-1]]
    calls = [c for c in calls if not c[0].startswith("--git-dir=")]  # the emulators' own
    assert [c[0] for c in calls] == ["ls-remote", "clone", "checkout", "add", "-c", "push"]
    urls = {arg for call in calls for arg in call if "://" in arg}
    assert urls == {git_server.url}  # no credentials in the URL either
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    argv = log.read_text()
    assert TOKEN not in argv and basic not in argv
    assert ("POST", "/ml/manifests.git/git-receive-pack", "right") in git_server.authorizations
    assert TOKEN not in (tmp_path / "audit.jsonl").read_text()


# ------------------------------------------------------------------------------ the emulator


@pytest.mark.parametrize(
    ("provider", "body", "refusal"),
    [
        ("github", {"title": "t", "base": "main"}, "'head' is a required property"),
        ("github", {"head": "x", "base": "main", "draft": "yes"}, "'yes' is not of type"),
        ("github", {"head": "x", "base": "main", "titel": "t"}, "'titel' is not a property"),
        ("gitlab", {"source_branch": "x", "target_branch": "main"}, "'title' is a required"),
        (
            "gitlab",
            {"source_branch": "x", "target_branch": "main", "title": "t", "labels": "a,b"},
            "'a,b' is not of type 'array'",
        ),
    ],
)
def test_the_pull_request_emulator_refuses_what_the_providers_descriptions_refuse(
    git_server: Any, provider: str, body: dict[str, Any], refusal: str
) -> None:
    """The extracts are what is enforced: GitHub's `pulls/create` body schema, GitLab's
    postApiV4ProjectsIdMergeRequests (where `labels` is an array)."""
    import httpx

    from tests.servers.pull_requests import PullRequestAPI

    with PullRequestAPI(provider, TOKEN, git_server.bare, "ml/manifests") as prs:
        if provider == "github":
            url, headers = (
                f"{prs.url}/repos/ml/manifests/pulls",
                {"Authorization": f"Bearer {TOKEN}"},
            )
        else:
            url, headers = (
                f"{prs.url}/projects/ml%2Fmanifests/merge_requests",
                {"PRIVATE-TOKEN": TOKEN},
            )
        answer = httpx.post(url, json=body, headers=headers, timeout=10)
        assert answer.status_code in (400, 422)
        assert any(refusal in e for e in prs.invalid), prs.invalid
        assert prs.pulls == []
