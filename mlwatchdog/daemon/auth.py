"""Who may call the daemon: credentials from `daemon.auth`, checked by `AuthMiddleware` before
the app sees the request, so a caller without them never gets a byte of its body read.

Credentials: bearer tokens (inline from ${ENV}, or files of a mounted Secret, re-read when they
change), HTTP Basic users, Kubernetes ServiceAccount tokens (checked with a TokenReview),
per-InferenceService secrets in the sink's path (KServe's logger cannot send headers), and
per-Canary secrets in the Flagger webhooks' path (neither can Flagger). Each has
roles: read, alerts, operate, sink (`route_role` says which a request needs). With no credential
configured everything is open, which the loader allows only on a loopback address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import ROLES, Auth, Role

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SINK_PREFIX = "/sink/kserve"
FLAGGER_PREFIX = "/flagger"  # /flagger/<hook>[/<secret>]: Flagger's webhooks (daemon/flagger.py)
_NEGATIVE_TTL = 10.0  # seconds a token the API server rejected stays rejected without asking
_CACHE_SIZE = 1024  # reviewed tokens remembered; an attacker's random tokens evict only each other
_FILE_RECHECK = 5.0  # seconds between stat() calls on a token file


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, and what it may do."""

    name: str  # the credential's name, user or ServiceAccount: the log's and audit's "who"
    kind: str  # token, basic, serviceaccount, sink_path, flagger_path, anonymous
    roles: frozenset[str]
    # A sink path secret is good for one InferenceService's events: (namespace, name).
    inference_service: tuple[str, str] | None = None
    # A flagger path secret is good for one Canary's webhook calls: (namespace, name).
    canary: tuple[str, str] | None = None


ANONYMOUS = Principal("anonymous", "anonymous", frozenset(ROLES))


def route_role(method: str, path: str) -> Role | None:
    """The role a request needs; None for the endpoints that stay open."""
    if path in OPEN_PATHS:
        return None
    if method == "POST":
        if path == "/api/v1/alerts":
            return "alerts"
        # Every POST on a target or an incident acts: evaluate, pause, resume, silence,
        # unsilence, approve, reject.
        if path == "/-/reload" or path.startswith(("/api/v1/targets/", "/api/v1/incidents/")):
            return "operate"
        if path == SINK_PREFIX or path.startswith(SINK_PREFIX + "/"):
            return "sink"
    return "read"  # everything else reveals something: targets, incidents, reports, the API docs


@dataclass(frozen=True)
class Review:
    """A TokenReview's answer: the user when authenticated; `error` when the API could not say."""

    authenticated: bool
    username: str = ""
    error: str = ""  # the review could not be made (API down): answer 503, the caller retries


class Unavailable(Exception):
    """The credential cannot be checked now (the Kubernetes API did not answer)."""


class NeedsIO(Exception):
    """Checking the credential needs a file read or a TokenReview: call again with io=True
    (off the event loop)."""


class Authenticator:
    """Checks a request's credentials against the current `daemon.auth` (read per request, so a
    reload applies at once)."""

    def __init__(
        self,
        settings: Callable[[], Auth],
        review: Callable[[str, list[str]], Review] | None = None,
        on_secret: Callable[[Iterable[str]], None] = lambda _: None,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.review = review
        self.on_secret = on_secret  # token file contents: the Redactor scrubs them too
        self.log = log
        self.clock = clock
        self._files: dict[str, tuple[float, tuple[int, int] | None, str | None]] = {}
        self._reviews: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings().enabled

    def read_token_files(self) -> None:
        """Read every token file now (at start-up): an unreadable one is logged at once, not at
        the first request that needed it."""
        for credential in self.settings().tokens:
            self._file(credential.file)

    def authenticate(
        self, authorization: str | None, path: str, *, io: bool = True
    ) -> Principal | None:
        """The caller, or None when the credentials are missing or wrong. Raises Unavailable
        when a ServiceAccount token cannot be reviewed now. With io=False it raises NeedsIO
        rather than read a token file or ask for a TokenReview (what it remembers is used)."""
        settings = self.settings()
        if not settings.enabled:
            return ANONYMOUS
        if path.startswith(SINK_PREFIX + "/"):
            found = self._sink_path(settings, path[len(SINK_PREFIX) + 1 :])
            if found is not None:
                return found
        hook, _, secret = path[len(FLAGGER_PREFIX) + 1 :].partition("/")
        if path.startswith(FLAGGER_PREFIX + "/") and hook and secret:
            found = self._flagger_path(settings, secret)
            if found is not None:
                return found
        scheme, _, value = (authorization or "").strip().partition(" ")
        value = value.strip()
        if not value:
            return None
        if scheme.lower() == "bearer":
            return self._bearer(settings, value, io)
        if scheme.lower() == "basic":
            return self._basic(settings, value)
        return None

    def challenge(self) -> str:
        """The WWW-Authenticate header of a 401."""
        settings = self.settings()
        schemes = ['Bearer realm="mlwatchdog"']
        if settings.basic:
            schemes.append('Basic realm="mlwatchdog"')
        return ", ".join(schemes)

    # ------------------------------------------------------------------------- credentials

    def _bearer(self, settings: Auth, token: str, io: bool) -> Principal | None:
        given = token.encode()
        found = None
        for credential in settings.tokens:  # every one compared: the time says nothing
            expected = (
                credential.token.reveal() if credential.token else self._file(credential.file, io)
            )
            if expected and hmac.compare_digest(given, expected.encode()) and found is None:
                found = Principal(credential.name, "token", frozenset(credential.roles))
        if found is not None or settings.kubernetes is None or self.review is None:
            return found
        if token.count(".") != 2:  # a ServiceAccount token is a JWT: nothing else to review
            return None
        return self._serviceaccount(settings, token, io)

    def _basic(self, settings: Auth, value: str) -> Principal | None:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None  # a malformed header is a 401, never a 500
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        found = None
        for credential in settings.basic:
            same_user = hmac.compare_digest(user.encode(), credential.username.encode())
            same_password = hmac.compare_digest(
                password.encode(), credential.password.reveal().encode()
            )
            if same_user and same_password and found is None:
                found = Principal(credential.username, "basic", frozenset(credential.roles))
        return found

    def _sink_path(self, settings: Auth, secret: str) -> Principal | None:
        given = secret.encode()
        found = None
        for entry in settings.sink_paths:
            if hmac.compare_digest(given, entry.secret.reveal().encode()) and found is None:
                found = Principal(
                    f"sink-path:{entry.namespace}/{entry.inference_service}",
                    "sink_path",
                    frozenset({"sink"}),
                    (entry.namespace, entry.inference_service),
                )
        return found

    def _flagger_path(self, settings: Auth, secret: str) -> Principal | None:
        given = secret.encode()
        found = None
        for entry in settings.flagger_paths:  # every one compared: the time says nothing
            if hmac.compare_digest(given, entry.secret.reveal().encode()) and found is None:
                found = Principal(
                    f"flagger-path:{entry.namespace}/{entry.canary}",
                    "flagger_path",
                    frozenset({"read"}),  # its answers reveal the target's state, nothing more
                    canary=(entry.namespace, entry.canary),
                )
        return found

    def _serviceaccount(self, settings: Auth, token: str, io: bool) -> Principal | None:
        assert settings.kubernetes is not None and self.review is not None
        key = hashlib.sha256(token.encode()).hexdigest()  # the token itself is never kept
        now = self.clock()
        with self._lock:
            cached = self._reviews.get(key)
            if cached is not None and cached[0] > now:
                self._reviews.move_to_end(key)
                return cached[1]
        if not io:
            raise NeedsIO
        review = self.review(token, list(settings.kubernetes.audiences))
        if review.error:
            raise Unavailable(review.error)
        principal = None
        if review.authenticated:
            principal = _serviceaccount_principal(settings, review.username)
        ttl = settings.kubernetes.cache.total_seconds() if principal else _NEGATIVE_TTL
        with self._lock:
            self._reviews[key] = (now + ttl, principal)
            self._reviews.move_to_end(key)
            while len(self._reviews) > _CACHE_SIZE:
                self._reviews.popitem(last=False)
        return principal

    def _file(self, path: str | None, io: bool = True) -> str | None:
        """A token file's content (cut of surrounding space), re-read when it changes."""
        if path is None:
            return None
        now = self.clock()
        with self._lock:
            known = self._files.get(path)
        if known is not None and now - known[0] < _FILE_RECHECK:
            return known[2]
        if not io:
            raise NeedsIO
        seen, value = (known[1], known[2]) if known is not None else (None, None)
        try:
            stat = os.stat(path)
            if (stat.st_mtime_ns, stat.st_size) != seen:
                with open(path, encoding="utf-8") as f:
                    value = f.read().strip() or None
                self.on_secret([value] if value else [])
                seen = (stat.st_mtime_ns, stat.st_size)
        except (OSError, UnicodeDecodeError) as exc:
            # Said once, when it becomes unreadable (or is at the first look).
            if self.log is not None and (known is None or known[2] is not None):
                self.log.error(
                    "token file unreadable: its credential is refused", file=path, error=str(exc)
                )
            seen, value = None, None
        with self._lock:
            self._files[path] = (now, seen, value)
        return value


def _serviceaccount_principal(settings: Auth, username: str) -> Principal | None:
    """The principal of `system:serviceaccount:<namespace>:<name>` with the roles of every rule
    naming it; None when no rule does (an authenticated user the config does not allow)."""
    assert settings.kubernetes is not None
    prefix = "system:serviceaccount:"
    if not username.startswith(prefix):
        return None
    namespace, _, name = username[len(prefix) :].partition(":")
    roles: set[str] = set()
    for rule in settings.kubernetes.service_accounts:
        rule_ns, _, rule_name = rule.service_account.partition(":")
        if rule_ns == namespace and rule_name in ("*", name):
            roles.update(rule.roles)
    if not roles:
        return None
    return Principal(f"{namespace}:{name}", "serviceaccount", frozenset(roles))


def kubernetes_reviewer(api: Any) -> Callable[[str, list[str]], Review]:
    """A TokenReview through `api` (a KubeApi): POST authentication.k8s.io/v1 tokenreviews.
    RBAC: create on tokenreviews (the ClusterRole system:auth-delegator grants it)."""

    def review(token: str, audiences: list[str]) -> Review:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, **({"audiences": audiences} if audiences else {})},
        }
        try:
            answer = api.request(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                body,
                "application/json",
                attempts=2,
            )
        except ActionError as exc:
            return Review(False, error=f"TokenReview failed: {exc}")
        status = answer.get("status") or {}
        if not status.get("authenticated"):  # false is left out on the wire (omitempty)
            return Review(False)
        # An authenticator that does not know audiences may accept a token meant for another:
        # the answer must name one of those asked for (the TokenReview API reference says so).
        if audiences and not set(status.get("audiences") or ()) & set(audiences):
            return Review(False)
        user = status.get("user") or {}
        return Review(True, username=str(user.get("username") or ""))

    return review


# -------------------------------------------------------------------------------- middleware


class AuthMiddleware:
    """ASGI middleware: every request but /healthz, /readyz and /metrics needs a credential with
    the route's role, checked from the headers alone (the body is not read before that). The
    caller ends up in `scope["state"]["principal"]`."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        role = route_role(scope["method"], scope["path"])
        authenticator = self.authenticator
        principal: Principal | None = ANONYMOUS
        if role is not None and authenticator.enabled:
            header = _header(scope, b"authorization")
            try:
                try:  # on the event loop when no file or TokenReview is needed: the sink's case
                    principal = authenticator.authenticate(header, scope["path"], io=False)
                except NeedsIO:
                    principal = await anyio.to_thread.run_sync(
                        authenticator.authenticate, header, scope["path"]
                    )
            except Unavailable as exc:
                await answer(send, 503, f"cannot check the credentials now: {exc}", {
                    "retry-after": "5"
                })  # fmt: skip
                return
            if principal is None:
                detail = (
                    "credentials needed: send `Authorization: Bearer <token>` (or Basic) with a "
                    "credential of daemon.auth in rules.yaml"
                )
                await answer(send, 401, detail, {"www-authenticate": authenticator.challenge()})
                return
            if role not in principal.roles:
                detail = (
                    f"{principal.name} may not do this: it needs the role {role!r} "
                    f"(daemon.auth, roles of that credential: {sorted(principal.roles)})"
                )
                await answer(send, 403, detail)
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def answer(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    # The body of the request is left unread: the server closes the connection after this answer.
    raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
