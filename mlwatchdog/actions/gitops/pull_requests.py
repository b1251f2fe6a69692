"""Open (or find) the pull request that carries a revert: GitHub REST `POST
/repos/{owner}/{repo}/pulls` (found again with `GET .../pulls?head=owner:branch&state=all`), or
GitLab `POST /projects/{id}/merge_requests` (found with `GET ...?source_branch=`). Standard
library HTTP; the token goes in a header only (`Authorization: Bearer` for GitHub,
`PRIVATE-TOKEN` for GitLab) and never into an error message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import GitOps

DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str


def project_of(gitops: GitOps) -> str:
    """owner/repo (GitHub) or the project path (GitLab): `project`, else the repo URL's path."""
    if gitops.project:
        return gitops.project
    assert gitops.repo is not None
    path = urlsplit(gitops.repo.reveal()).path.strip("/")
    return path.removesuffix(".git")


class PullRequests:
    def __init__(self, gitops: GitOps, timeout: float = 30.0) -> None:
        assert gitops.provider is not None and gitops.token is not None
        self.provider = gitops.provider
        self.api = (gitops.api_url or DEFAULT_API[gitops.provider]).rstrip("/")
        self.project = project_of(gitops)
        self.token = gitops.token
        self.timeout = timeout

    def find(self, branch: str) -> PullRequest | None:
        if self.provider == "github":
            owner = self.project.split("/")[0]
            query = urlencode({"head": f"{owner}:{branch}", "state": "all"})
            found = self._call("GET", f"/repos/{self.project}/pulls?{query}")
            return _github(found[0]) if found else None
        query = urlencode({"source_branch": branch})
        found = self._call(
            "GET", f"/projects/{quote(self.project, safe='')}/merge_requests?{query}"
        )
        return _gitlab(found[0]) if found else None

    def create(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        if self.provider == "github":
            pull = {"title": title, "head": branch, "base": base, "body": body}
            return _github(self._call("POST", f"/repos/{self.project}/pulls", pull))
        payload: dict[str, Any] = {
            "source_branch": branch,
            "target_branch": base,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }
        path = f"/projects/{quote(self.project, safe='')}/merge_requests"
        return _gitlab(self._call("POST", path, payload))

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        headers = {"Accept": "application/json", "User-Agent": "mlwatchdog"}
        if self.provider == "github":
            headers["Accept"] = "application/vnd.github+json"
            headers["X-GitHub-Api-Version"] = "2022-11-28"
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        else:
            headers["PRIVATE-TOKEN"] = self.token.reveal()
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.api + path, data, headers, method=method)
        what = f"{self.provider} {method} {self.api}{path.split('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read()[:300].decode(errors="replace")
            if exc.code in (401, 403):
                raise ActionError(
                    f"{what}: HTTP {exc.code}: rollback.gitops.token may not open pull requests "
                    f"on {self.project}: give it repo write (GitHub: pull requests: write; "
                    "GitLab: api scope)",
                    "permanent",
                    exc.code,
                ) from None
            kind = "temporary" if exc.code >= 500 or exc.code == 429 else "permanent"
            raise ActionError(f"{what}: HTTP {exc.code}: {text}", kind, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ActionError(
                f"{what}: unreachable ({exc}): check rollback.gitops.api_url", "temporary"
            ) from None


def _github(pr: dict[str, Any]) -> PullRequest:
    return PullRequest(int(pr["number"]), str(pr["html_url"]), str(pr["state"]))


def _gitlab(mr: dict[str, Any]) -> PullRequest:
    return PullRequest(int(mr["iid"]), str(mr["web_url"]), str(mr["state"]))
