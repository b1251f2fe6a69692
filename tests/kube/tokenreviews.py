"""TokenReview (authentication.k8s.io/v1) in FakeKubeAPI: `POST /apis/authentication.k8s.io/v1/
tokenreviews`, answered as kube-apiserver answers it; used by `apiserver.FakeKubeAPI`.

Semantics follow kube-apiserver's REST storage for the kind
(kubernetes/kubernetes pkg/registry/authentication/tokenreview/storage.go) and the API reference
(https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-review-v1/):
- create only, cluster-scoped, nothing stored; the answer is 201 with the TokenReview sent,
  `status` filled in;
- an empty `spec.token` is a 400 ("token is required for TokenReview in authentication");
- no `spec.audiences` means the API server's own audiences; a token is authenticated only for an
  audience it was issued for (the ServiceAccount token authenticator intersects the two; none in
  common: "token audiences [...] is invalid for the target audiences [...]"), and
  `status.audiences` is that intersection;
- an unknown or refused token: `status.error` says why and `authenticated` is absent (Go's
  `omitempty` drops a false bool), `user` is `{}`; unknown body fields are dropped with a
  `Warning` header, as the default `fieldValidation=Warn` does.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from tests.kube.status import ApiError, bad_request

GROUP_VERSION = "authentication.k8s.io/v1"
KIND = "TokenReview"
PATH = f"/apis/{GROUP_VERSION}/tokenreviews"
# kubeadm's default --api-audiences (the service-account issuer): what a pod's token is for.
API_AUDIENCES = ("https://kubernetes.default.svc.cluster.local",)
_SERVICE_ACCOUNT = "system:serviceaccount:"


@dataclass(frozen=True)
class IssuedToken:
    """A token the fake knows: who it stands for and the audiences it was issued for."""

    username: str
    uid: str
    groups: tuple[str, ...]
    audiences: tuple[str, ...]


def default_groups(username: str) -> tuple[str, ...]:
    """The groups kube-apiserver gives a user: a ServiceAccount's are its namespace's too."""
    if username.startswith(_SERVICE_ACCOUNT):
        namespace = username[len(_SERVICE_ACCOUNT) :].split(":", 1)[0]
        return (
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        )
    return ("system:authenticated",)


def _go_quoted(values: list[str] | tuple[str, ...]) -> str:
    """How Go's %q prints a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


class TokenReviews:
    """The tokens a test issued (`issue`), and the answer to a TokenReview request (`create`)."""

    def __init__(self, api_audiences: tuple[str, ...] = API_AUDIENCES) -> None:
        self.api_audiences = api_audiences
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        token: str,
        username: str,
        audiences: list[str] | None = None,
        uid: str | None = None,
        groups: list[str] | None = None,
    ) -> IssuedToken:
        issued = IssuedToken(
            username,
            uid or str(uuid.uuid4()),
            tuple(groups) if groups is not None else default_groups(username),
            tuple(audiences) if audiences else self.api_audiences,
        )
        with self._lock:
            self._tokens[token] = issued
        return issued

    def create(self, method: str, body: Any) -> tuple[int, dict[str, Any], list[str]]:
        """(status code, answer, warnings) of a request to PATH."""
        if method != "POST":
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized (must be of type TokenReview)")
        for field, label, expected in (
            ("apiVersion", "API version", GROUP_VERSION),
            ("kind", "kind", KIND),
        ):
            given = body.get(field)
            if given not in (None, "", expected):  # absent: taken from the URL, as the decoder does
                raise bad_request(
                    f"the {label} in the data ({given}) does not match the expected {label} "
                    f"({expected})"
                )
        warnings = [
            f'unknown field "{k}"'
            for k in body
            if k not in ("apiVersion", "kind", "metadata", "spec", "status")
        ]
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise bad_request("error decoding body: spec is not an object")
        warnings += [f'unknown field "spec.{k}"' for k in spec if k not in ("token", "audiences")]
        token = spec.get("token")
        audiences = spec.get("audiences") or []
        if not isinstance(token, str | None) or not (
            isinstance(audiences, list) and all(isinstance(a, str) for a in audiences)
        ):
            raise bad_request("error decoding body: spec.token is a string, spec.audiences strings")
        if not token:
            raise bad_request("token is required for TokenReview in authentication")
        review = {
            "kind": KIND,
            "apiVersion": GROUP_VERSION,
            "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None},
            # Decoded into the typed object: unknown fields are gone, empty ones omitted.
            "spec": {"token": token, **({"audiences": audiences} if audiences else {})},
            "status": self._status(token, audiences or list(self.api_audiences)),
        }
        return 201, review, warnings

    def _status(self, token: str, wanted: list[str]) -> dict[str, Any]:
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None:
            return {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        common = [a for a in wanted if a in issued.audiences]
        if not common:
            why = (
                f"token audiences {_go_quoted(issued.audiences)} is invalid for the target "
                f"audiences {_go_quoted(wanted)}"
            )
            return {"user": {}, "error": f"[invalid bearer token, {why}]"}
        return {
            "authenticated": True,
            "user": {"username": issued.username, "uid": issued.uid, "groups": list(issued.groups)},
            "audiences": common,
        }
