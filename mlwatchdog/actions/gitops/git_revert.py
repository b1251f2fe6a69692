"""`rollback.gitops.mode: git`: the revert goes into the manifests repository instead of the
cluster. Clone, change the image (Rollout or its workloadRef Deployment) or the storageUri
(InferenceService) in the manifest at `path` back to what the plan goes back to, commit on the
branch `mlwatchdog/revert-<incident>`, push, and open a pull or merge request. Idempotent per
incident: a pull request found for the branch is answered with, a branch already pushed is not
committed again. Dry-run clones and logs the diff and the pull request it would open.

`edit_manifest` is pure; the git CLI does the rest. The token reaches git through environment
config (`http.extraHeader`), never argv or the remote URL, so it shows in no process list,
error or log line.
"""

from __future__ import annotations

import base64
import difflib
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlwatchdog.actions.gitops.pull_requests import PullRequests
from mlwatchdog.actions.plan import Plan
from mlwatchdog.actions.workloads import Read
from mlwatchdog.core import ActionOutcome, Decision
from mlwatchdog.errors import ActionError
from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import GitOps

if TYPE_CHECKING:
    from mlwatchdog.actions.actuator import KubeActuator

GIT_TIMEOUT = 60
# What git prints when the server refused the credentials (HTTP 401/403, no prompt allowed).
AUTH_FAILED = re.compile(
    r"could not read (Username|Password)|Authentication failed|requested URL returned error: "
    r"40[13]|terminal prompts disabled"
)


def branch_for(incident: str) -> str:
    return "mlwatchdog/revert-" + re.sub(r"[^A-Za-z0-9._-]+", "-", incident).strip("-.")


def wanted(target: Target, read: Read, plan: Plan) -> tuple[str, str, str, list[str]]:
    """(manifest kind, name, field, values) the revert writes: container images of a Rollout
    (or of its workloadRef Deployment), or the InferenceService predictor's storageUri."""
    candidate = plan.candidate
    if candidate is None:
        raise ActionError("the plan names nothing to go back to: no revert to write to Git")
    if target.workload.kind == "kserve":
        if not candidate.storage_uri:
            raise ActionError(
                f"{candidate.description}: its storageUri is unknown, so no manifest change "
                "can be written; use rollback.to: fallback with fallback.storage_uri"
            )
        return "InferenceService", str(target.workload.name), "storageUri", [candidate.storage_uri]
    ref = (read.main.get("spec") or {}).get("workloadRef")
    if ref:
        return "Deployment", str(ref["name"]), "image", list(candidate.images)
    return "Rollout", str(target.workload.name), "image", list(candidate.images)


def edit_manifest(text: str, kind: str, name: str, field: str, values: list[str]) -> str:
    """`text` with the `field` values of the document of `kind`/`name` set to `values`, in
    order (containers in order, for images); formatting and comments kept."""
    parts = re.split(r"(?m)^(---[^\n]*\n)", text)
    for i, part in enumerate(parts):
        if part.startswith("---"):
            continue
        try:
            doc = yaml.safe_load(part)
        except yaml.YAMLError as exc:
            raise ActionError(f"the manifest is not YAML: {exc}") from None
        if not (isinstance(doc, dict) and doc.get("kind") == kind):
            continue
        if (doc.get("metadata") or {}).get("name") != name:
            continue
        current = _current(doc, field)
        if len(current) != len(values):
            raise ActionError(
                f"{kind} {name} in the manifest has {len(current)} {field} value(s), the revert "
                f"{len(values)}: edit it by hand"
            )
        edited, position = part, 0
        for old, new in zip(current, values, strict=True):
            pattern = re.compile(
                rf"(\b{field}:[ \t]*[\"']?){re.escape(old)}([\"']?[ \t]*(#.*)?$)", re.M
            )
            match = pattern.search(edited, position)
            if match is None:
                raise ActionError(f"{kind} {name}: cannot find `{field}: {old}` to change")
            replacement = match.group(1) + new + match.group(2)
            edited = edited[: match.start()] + replacement + edited[match.end() :]
            position = match.start() + len(replacement)
        parts[i] = edited
        return "".join(parts)
    raise ActionError(
        f"no {kind} named {name} in the manifest: check rollback.gitops.path (one file, "
        "possibly with several documents)"
    )


def _current(doc: dict[str, Any], field: str) -> list[str]:
    spec = doc.get("spec") or {}
    if field == "storageUri":
        predictor = spec.get("predictor") or {}
        for value in predictor.values():
            if isinstance(value, dict) and "storageUri" in value:
                return [str(value["storageUri"])]
        return []
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [str(c.get("image", "")) for c in containers]


class Repo:
    """A clone of the manifests repository in a temporary folder, driven by the git CLI."""

    def __init__(self, gitops: GitOps, where: Path) -> None:
        assert gitops.repo is not None and gitops.token is not None
        self.gitops = gitops
        self.where = where
        user = "x-access-token" if gitops.provider == "github" else "oauth2"
        basic = base64.b64encode(f"{user}:{gitops.token.reveal()}".encode()).decode()
        self.env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }
        self.secrets = (gitops.token.reveal(), basic)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd or self.where, env=self.env, capture_output=True,
                text=True, timeout=GIT_TIMEOUT, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ActionError(f"git {args[0]}: {exc}", "temporary") from None
        if done.returncode != 0:
            repo = self.gitops.repo
            said = done.stderr.strip()[-400:]
            for secret in self.secrets:  # never echoed by git, but never let it through
                said = said.replace(secret, "***")
            if AUTH_FAILED.search(said):
                raise ActionError(
                    f"git {args[0]} on {repo}: the repository refused rollback.gitops.token "
                    f"(HTTP authentication failed; git said: {said.splitlines()[-1]}): give the "
                    "token write access to the repository (GitHub: contents: write; GitLab: "
                    "write_repository)",
                    "permanent",
                )
            raise ActionError(
                f"git {args[0]} on {repo}: {said}: check rollback.gitops repo, branch and token",
                "permanent",
            )
        return done.stdout

    def remote_branch(self, branch: str) -> bool:
        assert self.gitops.repo is not None
        out = self.git("ls-remote", "--heads", self.gitops.repo.reveal(), branch, cwd=Path("/"))
        return bool(out.strip())

    def clone(self) -> None:
        assert self.gitops.repo is not None
        self.git(
            "clone", "--depth", "1", "--branch", self.gitops.branch, self.gitops.repo.reveal(),
            str(self.where), cwd=Path("/"),
        )  # fmt: skip


def carry_out(
    actuator: KubeActuator,
    target: Target,
    decision: Decision,
    read: Read,
    plan: Plan,
    record: dict[str, Any],
) -> ActionOutcome:
    """Write the revert to Git and open its pull request (or, in dry-run, log them)."""
    gitops = target.rollback.gitops
    assert gitops is not None and gitops.path is not None
    branch = branch_for(decision.incident)
    kind, name, field, values = wanted(target, read, plan)
    pulls = PullRequests(gitops)
    info: dict[str, Any] = {
        "repo": str(gitops.repo), "path": gitops.path, "base": gitops.branch, "branch": branch,
        "manifest": f"{kind} {name}", "field": field, "values": values,
    }  # fmt: skip
    record["git"] = info
    title = f"mlwatchdog: revert {target.name} ({decision.incident})"
    body = (
        f"Incident {decision.incident} on target {target.name}: {'; '.join(decision.reasons)}\n\n"
        f"Reverts {kind} {name} in `{gitops.path}`: {field} back to {', '.join(values)} "
        f"({plan.candidate.description if plan.candidate else ''}).\n\n"
        f"Opened by {actuator.identity}."
    )
    existing = pulls.find(branch)
    if existing is not None:
        detail = f"pull request for this incident already exists: {existing.url} ({existing.state})"
        actuator._audit(
            {**record, "git": {**info, "pull_request": existing.url}}, "skipped", detail
        )
        return ActionOutcome(decision.incident, ok=True, dry_run=decision.dry_run, detail=detail)
    with tempfile.TemporaryDirectory(prefix="mlwatchdog-git-") as tmp:
        repo = Repo(gitops, Path(tmp) / "repo")
        pushed = repo.remote_branch(branch)
        diff = ""
        if not pushed:
            repo.clone()
            manifest = repo.where / gitops.path
            try:
                text = manifest.read_text(encoding="utf-8")
            except OSError as exc:
                raise ActionError(
                    f"rollback.gitops.path {gitops.path} cannot be read in {gitops.repo} "
                    f"(branch {gitops.branch}): {exc.strerror}"
                ) from None
            edited = edit_manifest(text, kind, name, field, values)
            if edited == text:
                detail = f"Git already has {kind} {name} at {', '.join(values)}: nothing to commit"
                actuator._audit(record, "skipped", detail)
                return ActionOutcome(
                    decision.incident, ok=True, dry_run=decision.dry_run, detail=detail
                )
            diff = "".join(
                difflib.unified_diff(
                    text.splitlines(True),
                    edited.splitlines(True),
                    f"a/{gitops.path}",
                    f"b/{gitops.path}",
                )
            )
            info["diff"] = diff
            if decision.dry_run:
                detail = (
                    f"dry-run: would commit to {branch} and open '{title}' into {gitops.branch}"
                )
                actuator.log.warning("dry-run GitOps revert: would commit", target=target.name,
                                     branch=branch, diff=diff, title=title)  # fmt: skip
                actuator._audit(record, "dry_run", detail)
                return ActionOutcome(decision.incident, ok=True, dry_run=True, detail=detail)
            manifest.write_text(edited, encoding="utf-8")
            author, _, email = gitops.author.partition("<")
            repo.git("checkout", "-b", branch)
            repo.git("add", gitops.path)
            repo.git(
                "-c", f"user.name={author.strip()}",
                "-c", f"user.email={email.rstrip('>').strip()}",
                "commit", "-m", f"{title}\n\n{body}",
            )  # fmt: skip
            repo.git("push", "origin", f"HEAD:refs/heads/{branch}")
        elif decision.dry_run:
            detail = f"dry-run: branch {branch} exists; would open '{title}' into {gitops.branch}"
            actuator._audit(record, "dry_run", detail)
            return ActionOutcome(decision.incident, ok=True, dry_run=True, detail=detail)
    pr = pulls.create(branch, gitops.branch, title, body)
    info["pull_request"] = pr.url
    detail = f"revert committed to {branch} and pull request opened: {pr.url}"
    actuator._audit(record, "sent", detail)
    actuator._event(read.main, "MlwatchdogRollback", detail, warning=False)
    actuator.log.warning("GitOps revert proposed", target=target.name, pull_request=pr.url)
    return ActionOutcome(decision.incident, ok=True, dry_run=False, detail=detail)
