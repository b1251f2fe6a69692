"""A small, faithful fake kube-apiserver over real HTTP, for the `kubernetes` client and kubeconfig.

What it keeps from the real thing, because safe rollbacks depend on it:
- optimistic concurrency: one global resourceVersion, bumped by every write that changes
  something (a no-op write changes nothing, as etcd's GuaranteedUpdate skips it); a PUT or a
  PATCH whose result carries another resourceVersion than the stored one is a 409 Conflict;
- spec and status apart for kinds with a status subresource: writes to the object keep the stored
  status, writes to `/status` keep everything but status; a create drops status;
- custom resources are pruned, defaulted and validated against the vendored CRD schemas
  (tests/kube/schemas.py); strategic merge patch is refused on them with 415;
- errors are real `Status` bodies (tests/kube/status.py) with the real codes, reasons and words;
- metadata.uid / creationTimestamp / generation maintained as the apiserver does.
Tests steer it: fault injection (`fail`, `drop_response`, `conflict_once`), controller-like
reactors (`on_write`), direct store access (`create`, `get`, `mutate`, ...), a request log and a
log of every validation. `down()` / `up()` stop and resume listening on the same port.
TokenReview answers as the API server does for the tokens a test issues with `add_token`
(tests/kube/tokenreviews.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from kubernetes.client import ApiClient, Configuration

from tests.kube import events, patches, schemas, selectors, tokenreviews
from tests.kube.faults import Fault, fault_error
from tests.kube.resources import (
    EVENTS,
    ResourceType,
    Target,
    by_kind,
    by_plural,
    discovery,
    object_path,
    parse_path,
)
from tests.kube.status import (
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    internal,
    invalid,
    not_found,
    not_found_path,
    success,
    unsupported_media_type,
)

Reactor = Callable[["FakeKubeAPI", dict[str, Any] | None, dict[str, Any] | None], None]
Object = dict[str, Any]

_NAME_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # generateName's alphabet


@dataclass
class RequestRecord:
    """One request as the fake saw it and answered it."""

    method: str
    path: str  # without the query
    query: dict[str, str]
    content_type: str | None
    body: Any  # parsed JSON, or None
    status: int = 0
    response: Any = None
    note: str = ""  # why, when the answer does not say (injected fault, json-patch error, ...)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ValidationRecord:
    """One validation of an object about to be stored (and rejected when `errors`)."""

    source: str  # "PATCH /apis/...", "api.create", "api.mutate"
    api_version: str
    kind: str
    namespace: str
    name: str
    errors: list[str]
    pruned: list[str]  # unknown fields the apiserver silently dropped


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    api: FakeKubeAPI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as urllib3's pool expects
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.api._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track(self.connection, add=False)

    def _serve(self) -> None:
        self.server.api._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: `requests` is the log
        pass


def _method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubeAPI:
    """See the module docstring. Start with `start()` or `with FakeKubeAPI() as api:`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], Object] = {}
        self._rv = 1000  # realistic-looking, and distinguishable from small test numbers
        self._name_counter = 0
        self._server: _Server | None = None
        self._port = 0
        self._connections: set[socket.socket] = set()
        self._faults: list[Fault] = []
        self._conflicts: list[re.Pattern[str]] = []
        self._reactors: dict[str, list[Reactor]] = {}
        self.requests: list[RequestRecord] = []
        self.validations: list[ValidationRecord] = []
        self.reactor_errors: list[BaseException] = []
        self.internal_errors: list[BaseException] = []  # bugs in the fake itself
        self._tls = threading.local()  # per request thread: the warnings of the current write
        self.token_reviews = tokenreviews.TokenReviews()  # tokens TokenReview authenticates

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeKubeAPI is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> FakeKubeAPI:
        self._listen(0)
        return self

    def stop(self) -> None:
        self.down()

    def down(self) -> None:
        """Stop listening and cut open keep-alive connections: clients get connection refused."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def up(self) -> None:
        """Listen again on the same port (a kubeconfig written before stays valid)."""
        if self._server is None:
            self._listen(self._port)

    def _listen(self, port: int) -> None:
        server = _Server(("127.0.0.1", port), _Handler)
        server.api = self
        self._server = server
        self._port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-kube-api:{self._port}",
            daemon=True,
        ).start()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def __enter__(self) -> FakeKubeAPI:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api_client(self, retries: int | bool = 0) -> ApiClient:
        """A `kubernetes` ApiClient for `url`. `retries=0`: no urllib3 retries, so a refused
        connection fails at once (as MaxRetryError); the client's default retries 3 times."""
        configuration = Configuration(host=self.url, retries=retries, no_proxy="127.0.0.1")
        return ApiClient(configuration)

    def write_kubeconfig(
        self, path: str | Path, namespace: str = "default", context: str = "fake"
    ) -> Path:
        """A kubeconfig for another process: plain http to `url`, a bearer-token user."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": f"{context}-user", "user": {"token": "fake-token"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": context,
                        "user": f"{context}-user",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        path = Path(path)
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    # --- test steering -------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int | None = 1,
        message: str | None = None,
        before: Callable[[FakeKubeAPI], None] | None = None,
    ) -> None:
        """The next `times` requests (None: all, until clear_faults) with `method` ("*" for any)
        whose path matches `path_regex` (re.search) answer `status` with a real-looking Status.
        `before(api)` runs first, e.g. to have a concurrent writer change the object."""
        self._faults.append(
            Fault(method.upper(), re.compile(path_regex), status, times, message, before)
        )

    def drop_response(self, method: str, path_regex: str, times: int | None = 1) -> None:
        """The next matching requests are carried out, but the connection is closed instead of
        answering: the write happened and the client does not know (a timeout in real life)."""
        self._faults.append(
            Fault(method.upper(), re.compile(path_regex), 0, times, None, None, drop=True)
        )

    def add_token(
        self,
        token: str,
        username: str,
        audiences: list[str] | None = None,
        uid: str | None = None,
        groups: list[str] | None = None,
    ) -> tokenreviews.IssuedToken:
        """A token TokenReview authenticates as `username` for `audiences` (default: the API
        server's own, as a pod's ServiceAccount token), e.g.
        `add_token(t, "system:serviceaccount:monitoring:grafana")`."""
        return self.token_reviews.issue(token, username, audiences, uid, groups)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._conflicts.clear()

    def conflict_once(self, path_regex: str) -> None:
        """On the next write to a matching path, first bump the stored object's resourceVersion
        (as a controller's status update would), so a client holding the old resourceVersion
        gets a genuine 409 through the normal optimistic-concurrency path."""
        self._conflicts.append(re.compile(path_regex))

    def on_write(self, plural: str, fn: Reactor) -> None:
        """`fn(api, after, before)` runs after every HTTP write that changed an object of this
        plural (`before` None on create, `after` None on delete), before the response is sent.
        It acts as a controller through the store API (`mutate`, `update_status`, `create`),
        whose writes do not trigger reactors. Exceptions land in `reactor_errors`."""
        self._reactors.setdefault(plural, []).append(fn)

    # --- logs --------------------------------------------------------------------------------

    def writes(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.method != "GET"]

    def patches(self, path_suffix: str | None = None) -> list[RequestRecord]:
        return [
            r
            for r in self.requests
            if r.method == "PATCH" and (path_suffix is None or r.path.endswith(path_suffix))
        ]

    def assert_all_valid(self, allow_pruned: bool = False) -> None:
        """Fail unless every object anyone tried to store was valid (and had no unknown fields)."""
        bad = [v for v in self.validations if v.errors or (v.pruned and not allow_pruned)]
        assert not bad, "invalid or pruned writes:\n" + "\n".join(
            f"{v.source} {v.kind}/{v.name}: errors={v.errors} pruned={v.pruned}" for v in bad
        )

    @property
    def resource_version(self) -> int:
        return self._rv

    # --- store access for tests -----------------------------------------------------------------

    def create(self, obj: Object) -> Object:
        """Store `obj` as a POST would (validated, server metadata filled in) but keeping its
        status, uid and creationTimestamp when given: seeding state a controller wrote."""
        rtype = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        with self._lock:
            return self._create(rtype, namespace, obj, "api.create", seeding=True)

    def seed(self, *objs: Object | Iterable[Object] | Any) -> list[Object]:
        """`create` each object; accepts objects, lists of them, or a factory's result."""
        created = []
        for item in objs:
            if isinstance(item, dict):
                created.append(self.create(item))
            elif hasattr(item, "objects"):
                created += self.seed(*item.objects)
            else:
                created += self.seed(*item)
        return created

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> Object | None:
        rtype = by_plural(api_version, plural)
        with self._lock:
            stored = self._objects.get((rtype.store_key, namespace, name))
            return self._served(rtype, stored) if stored else None

    def list_objects(
        self, api_version: str, plural: str, namespace: str | None = None
    ) -> list[Object]:
        rtype = by_plural(api_version, plural)
        with self._lock:
            return [
                self._served(rtype, obj)
                for (key, ns, _), obj in sorted(self._objects.items())
                if key == rtype.store_key and namespace in (None, ns)
            ]

    def mutate(self, path: str, fn: Callable[[Object], Object | None]) -> Object:
        """Change a stored object as a controller would: `fn` edits a copy in place (or returns
        a new one); it is validated and stored with a new resourceVersion (if anything changed).
        With a `/status` path only the status of the result is kept."""
        target = parse_path(path)
        if target is None or not target.name:
            raise KeyError(f"not an object path: {path}")
        with self._lock:
            old = self._require(target)
            served = self._served(target.rtype, old)
            result = fn(served)
            new = self._to_storage(target.rtype, result if result is not None else served)
            if target.subresource == "status":
                new = self._with_status_of(old, new)
            return self._served(target.rtype, self._commit(target, old, new, "api.mutate")[0])

    def update_status(
        self, api_version: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Object:
        """Replace the status wholesale (as a controller's PUT /status)."""
        rtype = by_plural(api_version, plural)
        path = object_path(rtype, namespace, name, "status")
        return self.mutate(path, lambda obj: {**obj, "status": copy.deepcopy(status)})

    def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None:
        rtype = by_plural(api_version, plural)
        with self._lock:
            if self._objects.pop((rtype.store_key, namespace, name), None) is not None:
                self._rv += 1

    def validate(self, obj: Object, unknown_fields: bool = True) -> list[str]:
        """What the apiserver would say about `obj` (schema chosen from apiVersion/kind), without
        storing it. With `unknown_fields`, fields it would silently prune are reported too."""
        candidate = copy.deepcopy(obj)
        pruned = schemas.prune_and_default(candidate)
        found = schemas.messages(schemas.validate(candidate))
        if unknown_fields:
            found += [f'unknown field "{p}"' for p in pruned]
        return found

    # --- the write engine (callers hold the lock) ----------------------------------------------

    def _served(self, rtype: ResourceType, stored: Object) -> Object:
        obj = copy.deepcopy(stored)
        return events.from_core(obj) if rtype is EVENTS else obj

    def _to_storage(self, rtype: ResourceType, obj: Object) -> Object:
        obj = copy.deepcopy(obj)
        return events.to_core(obj) if rtype is EVENTS else obj

    def _require(self, target: Target) -> Object:
        rtype = target.rtype
        stored = self._objects.get((rtype.store_key, target.namespace, target.name))
        if stored is None:
            raise not_found(rtype.group, rtype.plural, target.name)
        return stored

    @staticmethod
    def _with_status_of(old: Object, new: Object) -> Object:
        """`old` with the status of `new`: what a status-subresource write may change."""
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = copy.deepcopy(new["status"])
        else:
            result.pop("status", None)
        return result

    def _record(
        self, source: str, obj: Object, errors: list[FieldError], pruned: list[str]
    ) -> None:
        meta = obj.get("metadata") or {}
        self.validations.append(
            ValidationRecord(
                source,
                obj.get("apiVersion", ""),
                obj.get("kind", ""),
                meta.get("namespace", ""),
                meta.get("name", ""),
                schemas.messages(errors),
                list(pruned),
            )
        )

    def _check(
        self, target: Target, obj: Object, old: Object | None, source: str
    ) -> tuple[list[str], ApiError | None]:
        """Prune, default and validate `obj` (storage form) in place."""
        rtype = target.rtype
        served = self._served(rtype, obj)
        pruned = schemas.prune_and_default(served)
        errors = schemas.validate(served, old=self._served(rtype, old) if old else None)
        if rtype.storage == "events" and old is None:
            errors += events.validate_create(events.to_core(served), strict=rtype is EVENTS)
        obj.clear()
        obj.update(self._to_storage(rtype, served))
        self._record(source, served, errors, pruned)
        name = (obj.get("metadata") or {}).get("name", "")
        error = invalid(rtype.kind, rtype.group, name, errors) if errors else None
        return [f'unknown field "{p}"' for p in pruned], error

    def _create(
        self,
        rtype: ResourceType,
        namespace: str,
        body: Any,
        source: str,
        seeding: bool = False,
        dry_run: bool = False,
    ) -> Object:
        if not isinstance(body, dict):
            raise bad_request(f"the object provided is unrecognized (must be of type {rtype.kind})")
        obj = copy.deepcopy(body)
        self._check_type(rtype, obj)
        obj = self._to_storage(rtype, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + self._suffix()
        if meta.get("resourceVersion") and not seeding:
            raise internal("resourceVersion should not be set on objects to be created")
        if not seeding or not meta.get("uid"):
            meta["uid"] = str(uuid.uuid4())
        if not seeding or not meta.get("creationTimestamp"):
            meta["creationTimestamp"] = _now()
        meta.pop("resourceVersion", None)
        if rtype.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rtype.status_subresource and not seeding:
            obj.pop("status", None)  # status is the controller's, written through /status
        target = Target(rtype, namespace, meta.get("name", ""), "")
        warnings, error = self._check(target, obj, None, source)
        if error:
            raise error
        meta = obj["metadata"]  # _check rebuilt it
        key = (rtype.store_key, namespace, meta["name"])
        if key in self._objects:
            raise already_exists(rtype.group, rtype.plural, meta["name"])
        if not dry_run:
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects[key] = obj
        self._tls.warnings = warnings
        return self._served(rtype, obj)

    def _suffix(self) -> str:
        self._name_counter += 1
        n, out = self._name_counter * 7919, ""
        for _ in range(5):
            n, i = divmod(n, len(_NAME_SUFFIX))
            out += _NAME_SUFFIX[i]
        return out

    @staticmethod
    def _check_type(rtype: ResourceType, obj: Object) -> None:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != rtype.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.api_version})"
            )
        if kind and kind != rtype.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind

    def _update(
        self, target: Target, candidate: Any, source: str, *, from_patch: bool, dry_run: bool
    ) -> tuple[Object, Object, bool]:
        """PUT or PATCH result -> stored. Returns (old, new, changed), storage forms."""
        rtype = target.rtype
        old = self._require(target)
        if not isinstance(candidate, dict):
            raise bad_request(f"the object provided is unrecognized (must be of type {rtype.kind})")
        new = copy.deepcopy(candidate)
        self._check_type(rtype, new)
        new = self._to_storage(rtype, new)
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        name_errors = []
        if meta.get("name") not in (None, "", target.name):
            if not from_patch:
                raise bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the URL "
                    f"({target.name})"
                )
            name_errors.append(("metadata.name", meta["name"]))
        if meta.get("namespace") not in (None, "", target.namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        # Optimistic concurrency, before any validation, as the registry store does it.
        rv = meta.get("resourceVersion")
        if rv and str(rv) != old_meta["resourceVersion"]:
            raise conflict(rtype.group, rtype.plural, target.name)
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            name_errors.append(("metadata.uid", meta["uid"]))
        if name_errors:
            raise invalid(
                rtype.kind,
                rtype.group,
                target.name,
                [
                    FieldError("FieldValueInvalid", f, "field is immutable", v, True)
                    for f, v in name_errors
                ],
            )
        meta["name"], meta["namespace"] = target.name, target.namespace
        meta["uid"] = old_meta["uid"]
        meta["creationTimestamp"] = old_meta["creationTimestamp"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if "generation" in old_meta:
            meta["generation"] = old_meta["generation"]
        else:
            meta.pop("generation", None)
        if rtype.status_subresource:
            if target.subresource == "status":
                new = self._with_status_of(old, new)
            else:
                new = self._with_status_of(new, old)
        stored, changed = self._commit(target, old, new, source, dry_run=dry_run)
        return old, stored, changed

    def _commit(
        self, target: Target, old: Object, new: Object, source: str, dry_run: bool = False
    ) -> tuple[Object, bool]:
        """Generation, prune/default/validate, no-op detection, resourceVersion bump, store."""
        rtype = target.rtype
        warnings, error = self._check(target, new, old, source)
        if error:
            raise error
        if rtype.generation and self._spec_changed(rtype, old, new):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        self._tls.warnings = warnings
        if new == old:
            return old, False  # etcd skips an unchanged object: no new resourceVersion
        if not dry_run:
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[(rtype.store_key, target.namespace, target.name)] = new
        return new, True

    @staticmethod
    def _spec_changed(rtype: ResourceType, old: Object, new: Object) -> bool:
        """Whether metadata.generation moves: anything but metadata (and status, when it is a
        subresource) changed; for Deployments also annotations (copied to ReplicaSets)."""
        skip = {"metadata", "status"} if rtype.status_subresource else {"metadata"}

        def spec(obj: Object) -> dict[str, Any]:
            return {k: v for k, v in obj.items() if k not in skip}

        if spec(old) != spec(new):
            return True
        if rtype.kind == "Deployment":
            return bool(old["metadata"].get("annotations") != new["metadata"].get("annotations"))
        return False

    # --- HTTP ------------------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RequestRecord(handler.command, parts.path, query, content_type, body)
        self._tls.warnings = []
        headers: dict[str, str] = {}
        drop = False
        try:
            drop = self._inject(record)
            status, response = self._dispatch(record, raw)
        except ApiError as error:
            status, response, headers = error.code, error.body(), error.headers
            record.note = record.note or error.note
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test
            self.internal_errors.append(exc)
            bug = internal(f"FakeKubeAPI: {type(exc).__name__}: {exc}")
            status, response = bug.code, bug.body()
        record.status, record.response = status, response
        record.warnings = list(self._tls.warnings)
        with self._lock:
            self.requests.append(record)
        if drop:
            record.note = "response dropped (connection closed without an answer)"
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        data = json.dumps(response).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Audit-Id", str(uuid.uuid4()))
        for name, value in headers.items():
            handler.send_header(name, value)
        for warning in record.warnings:
            handler.send_header("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
        handler.end_headers()
        handler.wfile.write(data)

    def _inject(self, record: RequestRecord) -> bool:
        """Apply faults and conflict_once for this request; True if its response is to be lost."""
        with self._lock:
            fault = next(
                (f for f in self._faults if f.matches(record.method, record.path)),
                None,
            )
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            if record.method != "GET":
                for pattern in list(self._conflicts):
                    if pattern.search(record.path):
                        self._conflicts.remove(pattern)
                        self._bump(record.path)
                        record.note = "conflict_once: resourceVersion bumped first"
                        break
        if fault is None:
            return False
        if fault.before is not None:
            fault.before(self)
        if fault.drop:
            return True
        record.note = f"injected {fault.status}"
        raise fault_error(fault, record.method, record.path)

    def _bump(self, path: str) -> None:
        target = parse_path(path)
        if target is None or not target.name:
            return
        stored = self._objects.get((target.rtype.store_key, target.namespace, target.name))
        if stored is not None:
            self._rv += 1
            stored["metadata"]["resourceVersion"] = str(self._rv)

    def _dispatch(self, record: RequestRecord, raw: bytes) -> tuple[int, Any]:
        method, path, query = record.method, record.path, record.query
        if method == "GET" and (discovered := discovery(path)) is not None:
            return 200, discovered
        if path == tokenreviews.PATH:  # not a stored kind: reviewed and answered, nothing kept
            if raw and record.body is None:
                raise bad_request("error decoding body: the body is not valid JSON")
            status, review, warnings = self.token_reviews.create(method, record.body)
            self._tls.warnings = warnings
            return status, review
        target = parse_path(path)
        if target is None:
            raise not_found_path()
        rtype = target.rtype
        if target.subresource and (target.subresource != "status" or not rtype.status_subresource):
            raise not_found_path()
        if raw and record.body is None and method in ("POST", "PUT", "PATCH"):
            raise bad_request("error decoding body: the body is not valid JSON")
        dry_run = query.get("dryRun") == "All"
        with self._lock:
            if method == "GET":
                if query.get("watch") in ("true", "1"):
                    raise bad_request("FakeKubeAPI does not implement watch")
                if target.name:
                    return 200, self._served(rtype, self._require(target))
                return 200, self._list(target, query)
            if method == "POST":
                if target.name or not target.namespace:
                    raise _method_not_allowed()
                created = self._create(
                    rtype, target.namespace, record.body, f"POST {path}", dry_run=dry_run
                )
                if not dry_run:
                    self._react(rtype, created, None)
                return 201, created
            if not target.name:
                raise _method_not_allowed()
            if method == "DELETE":
                return 200, self._delete(target, record.body, dry_run)
            if method == "PUT":
                candidate = record.body
            elif method == "PATCH":
                candidate = self._patched(target, record)
            else:
                raise _method_not_allowed()
            old, new, changed = self._update(
                target, candidate, f"{method} {path}", from_patch=method == "PATCH", dry_run=dry_run
            )
            if changed and not dry_run:
                self._react(rtype, self._served(rtype, new), self._served(rtype, old))
            return 200, self._served(rtype, new)

    def _patched(self, target: Target, record: RequestRecord) -> Object:
        """The object as the patch would leave it (served form), before any checks."""
        rtype = target.rtype
        current = self._served(rtype, self._require(target))
        content_type = (record.content_type or "").split(";")[0].strip()
        if content_type == patches.MERGE_PATCH:
            return patches.apply_merge_patch(current, record.body)
        if content_type == patches.JSON_PATCH:
            return patches.apply_json_patch(current, record.body)
        accepted = [patches.JSON_PATCH, patches.MERGE_PATCH, patches.APPLY_PATCH]
        if content_type == patches.STRATEGIC_MERGE_PATCH and not rtype.custom:
            return patches.apply_strategic_merge_patch(current, record.body)
        if content_type == patches.APPLY_PATCH:
            error = unsupported_media_type(accepted)
            error.note = "FakeKubeAPI does not implement server-side apply"
            raise error
        if not rtype.custom:
            accepted.insert(2, patches.STRATEGIC_MERGE_PATCH)
        raise unsupported_media_type(accepted)

    def _delete(self, target: Target, body: Any, dry_run: bool) -> Object:
        rtype = target.rtype
        stored = self._require(target)
        meta = stored["metadata"]
        preconditions = (body or {}).get("preconditions") or {} if isinstance(body, dict) else {}
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = preconditions.get(key)
            if wanted and wanted != meta.get(key):
                raise conflict(
                    rtype.group,
                    rtype.plural,
                    target.name,
                    f"Precondition failed: {label} in precondition: {wanted}, {label} in object "
                    f"meta: {meta.get(key)}",
                )
        if not dry_run:
            del self._objects[(rtype.store_key, target.namespace, target.name)]
            self._rv += 1
            self._react(rtype, None, self._served(rtype, stored))
        return success(target.name, rtype.group, rtype.plural, meta["uid"])

    def _list(self, target: Target, query: dict[str, str]) -> Object:
        rtype = target.rtype
        matches = selectors.parse(query.get("labelSelector"))
        fields = selectors.parse_fields(query.get("fieldSelector", ""), rtype.storage == "events")
        items = []
        for (key, ns, _), stored in sorted(self._objects.items()):
            if key != rtype.store_key or (target.namespace and ns != target.namespace):
                continue
            if not matches(stored["metadata"].get("labels") or {}) or not fields(stored):
                continue
            item = self._served(rtype, stored)
            if not rtype.custom:  # typed lists carry no apiVersion/kind per item
                item.pop("apiVersion", None)
                item.pop("kind", None)
            items.append(item)
        return {
            "apiVersion": rtype.api_version,
            "kind": rtype.list_kind,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _react(self, rtype: ResourceType, after: Object | None, before: Object | None) -> None:
        for reactor in self._reactors.get(rtype.plural, []):
            try:
                reactor(self, copy.deepcopy(after), copy.deepcopy(before))
            except Exception as exc:
                self.reactor_errors.append(exc)


__all__ = ["FakeKubeAPI", "RequestRecord", "ValidationRecord", "object_path"]
