"""A pull-request API on loopback: GitHub `POST/GET /repos/{owner}/{repo}/pulls` and GitLab
`POST/GET /api/v4/projects/{id}/merge_requests`. Request bodies are validated against the
providers' own published descriptions, extracted in openapi/ (see openapi/SOURCES.md): GitHub's
api.github.com OpenAPI (npm @octokit/openapi) and GitLab's openapi_v2.yaml. GitHub answers are
built from that description's own `pull-request` example and validated against its response
schemas (`pull-request` for 201, an array of `pull-request-simple` for the list); GitLab answers
use only the properties its `API_Entities_MergeRequest` documents. It checks the token
(Bearer / PRIVATE-TOKEN) and, as both providers do, that the head branch exists in the real git
repository behind it (422 otherwise).

Stricter than the providers in one way, on purpose: a body property the description does not
define is refused (GitHub and GitLab drop it silently, so a misspelled field would be lost
without a word)."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

HERE = Path(__file__).parent / "openapi"
GITHUB = json.loads(gzip.decompress((HERE / "github-pulls.json.gz").read_bytes()))
GITLAB = json.loads((HERE / "gitlab-merge-requests.json").read_text())
GITHUB_PATH = "/repos/{owner}/{repo}/pulls"
GITLAB_PATH = "/api/v4/projects/{id}/merge_requests"
_GITHUB_OPS = GITHUB["paths"][GITHUB_PATH]
_REGISTRY = Registry().with_resource("urn:github", Resource.from_contents(GITHUB, DRAFT4))


def _github_schema(pointer: str) -> Draft4Validator:
    return Draft4Validator({"$ref": "urn:github#" + pointer}, registry=_REGISTRY)


def _gitlab_body_schema() -> dict[str, Any]:
    [body] = [p for p in GITLAB["paths"][GITLAB_PATH]["post"]["parameters"] if p["in"] == "body"]
    name = body["schema"]["$ref"].rsplit("/", 1)[1]
    return dict(GITLAB["definitions"][name])


GITHUB_CREATE = _GITHUB_OPS["post"]["requestBody"]["content"]["application/json"]["schema"]
GITLAB_CREATE = _gitlab_body_schema()
GITHUB_PULL = _github_schema("/components/schemas/pull-request")
GITHUB_LIST = _github_schema(
    "/paths/~1repos~1{owner}~1{repo}~1pulls/get/responses/200/content/application~1json/schema"
)
GITHUB_EXAMPLE = GITHUB["components"]["examples"]["pull-request"]["value"]
GITLAB_FIELDS = set(GITLAB["definitions"]["API_Entities_MergeRequest"]["properties"])


class PullRequestAPI:
    def __init__(self, provider: str, token: str, bare_repo: Path, project: str) -> None:
        self.provider, self.token, self.bare_repo, self.project = (
            provider,
            token,
            bare_repo,
            project,
        )
        self.pulls: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, body)
        self.invalid: list[str] = []  # bodies the schema refused (a test expects none)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api._handle(self, "GET")

            def do_POST(self) -> None:
                api._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        return base if self.provider == "github" else base + "/api/v4"

    def __enter__(self) -> PullRequestAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        body = None
        if method == "POST":
            raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
            body = json.loads(raw or b"null")
        self.requests.append((method, parts.path, body))
        if not self._authorized(h):
            return self._answer(h, 401, {"message": "Bad credentials"})
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if self.provider == "github":
            if parts.path != f"/repos/{self.project}/pulls":
                return self._answer(h, 404, {"message": "Not Found"})
            if method == "GET":
                owner = self.project.split("/")[0]
                found = [
                    _simple(p)
                    for p in self.pulls
                    if f"{owner}:{p['head']['ref']}" == query.get("head")
                ]
                self._check_answer(GITHUB_LIST, found)
                return self._answer(h, 200, found)
            return self._create_github(h, body)
        prefix = "/api/v4/projects/"
        if not parts.path.startswith(prefix) or not parts.path.endswith("/merge_requests"):
            return self._answer(h, 404, {"message": "404 Not Found"})
        if unquote(parts.path[len(prefix) : -len("/merge_requests")]) != self.project:
            return self._answer(h, 404, {"message": "404 Project Not Found"})
        if method == "GET":
            branch = query.get("source_branch")
            return self._answer(h, 200, [p for p in self.pulls if p["source_branch"] == branch])
        return self._create_gitlab(h, body)

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        if self.provider == "github":
            return h.headers.get("Authorization") == f"Bearer {self.token}"
        return h.headers.get("PRIVATE-TOKEN") == self.token

    def _errors(self, schema: dict[str, Any], body: Any) -> list[str]:
        errors = [e.message for e in Draft4Validator(schema).iter_errors(body)]
        if isinstance(body, dict):
            unknown = sorted(set(body) - set(schema.get("properties", {})))
            errors += [f"{key!r} is not a property of the request body" for key in unknown]
        self.invalid += errors
        return errors

    def _check_answer(self, validator: Draft4Validator, answer: Any) -> None:
        """A response that breaks the provider's schema is the emulator's bug: record it."""
        self.invalid += [
            f"response {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(answer)
        ]

    def _sha(self, branch: str) -> str | None:
        done = subprocess.run(
            ["git", f"--git-dir={self.bare_repo}", "rev-parse", "--verify", f"refs/heads/{branch}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else None

    def _create_github(self, h: BaseHTTPRequestHandler, body: Any) -> None:
        errors = self._errors(GITHUB_CREATE, body)
        if errors:
            return self._answer(h, 422, {"message": "Validation Failed", "errors": errors})
        sha = self._sha(body["head"])
        if sha is None or self._sha(body["base"]) is None:
            invalid = [{"field": "head", "code": "invalid"}]
            return self._answer(h, 422, {"message": "Validation Failed", "errors": invalid})
        if any(p["head"]["ref"] == body["head"] and p["state"] == "open" for p in self.pulls):
            return self._answer(h, 422, {"message": "A pull request already exists"})
        number = len(self.pulls) + 1
        pull = self._github_pull(number, body, sha)
        self._check_answer(GITHUB_PULL, pull)
        self.pulls.append(pull)
        self._answer(h, 201, pull)

    def _create_gitlab(self, h: BaseHTTPRequestHandler, body: Any) -> None:
        errors = self._errors(GITLAB_CREATE, body)
        if errors:
            return self._answer(h, 400, {"message": errors})
        sha = self._sha(body["source_branch"])
        if sha is None:
            return self._answer(h, 422, {"message": ["Source branch does not exist"]})
        iid = len(self.pulls) + 1
        mr = {
            "id": 5000 + iid, "iid": iid, "project_id": 42, "title": body["title"],
            "description": body.get("description"), "state": "opened",
            "source_branch": body["source_branch"], "target_branch": body["target_branch"],
            "web_url": f"https://gitlab.example.com/{self.project}/-/merge_requests/{iid}",
            "created_at": "2026-11-25T12:00:00Z", "sha": sha,
        }  # fmt: skip
        self.invalid += [
            f"response {k!r} is not documented" for k in sorted(set(mr) - GITLAB_FIELDS)
        ]
        self.pulls.append(mr)
        self._answer(h, 201, mr)

    def _github_pull(self, number: int, body: dict[str, Any], sha: str) -> dict[str, Any]:
        """GitHub's own example pull request, made this one."""
        owner, repo = self.project.split("/")
        api = f"{self.url}/repos/{self.project}"
        web = f"https://github.example.com/{self.project}/pull/{number}"
        pull = copy.deepcopy(GITHUB_EXAMPLE)
        pull.update(
            url=f"{api}/pulls/{number}", id=1000 + number, node_id=f"PR_{number}", html_url=web,
            diff_url=web + ".diff", patch_url=web + ".patch", number=number, state="open",
            issue_url=f"{api}/issues/{number}", commits_url=f"{api}/pulls/{number}/commits",
            review_comments_url=f"{api}/pulls/{number}/comments",
            comments_url=f"{api}/issues/{number}/comments", statuses_url=f"{api}/statuses/{sha}",
            title=body.get("title"), body=body.get("body"), draft=bool(body.get("draft", False)),
            locked=False, merged=False, mergeable=None, merged_at=None, closed_at=None,
            merge_commit_sha=None, merged_by=None, assignee=None, assignees=[], labels=[],
            milestone=None, requested_reviewers=[], requested_teams=[], auto_merge=None,
            created_at="2026-11-25T12:00:00Z", updated_at="2026-11-25T12:00:00Z",
        )  # fmt: skip
        for side, ref in (("head", body["head"]), ("base", body["base"])):
            part = pull[side]
            part.update(ref=ref, label=f"{owner}:{ref}", sha=sha if side == "head" else part["sha"])
            part["repo"] = {**part["repo"], "name": repo, "full_name": self.project}
        return pull

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def _simple(pull: dict[str, Any]) -> dict[str, Any]:
    """The list form (`pull-request-simple`) of a pull request."""
    only_full = {
        "additions", "changed_files", "comments", "commits", "deletions", "maintainer_can_modify",
        "mergeable", "mergeable_state", "merged", "merged_by", "rebaseable", "review_comments",
    }  # fmt: skip
    return {k: v for k, v in pull.items() if k not in only_full}
