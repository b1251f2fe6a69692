"""The Kubernetes API as the actuators use it: JSON by path, with client errors mapped once here.

Built on the `kubernetes` client's ApiClient (auth, TLS, the in-cluster token refresh) without its
typed models: Rollouts, InferenceServices, ReplicaSets and Deployments are read and patched as
plain JSON, which is what the audit log records and the tests validate against the CRDs.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config

from mlwatchdog.errors import ActionError, ConfigError
from mlwatchdog.rules.schema import Kubernetes

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
_VERBS = {"GET": "get", "PATCH": "patch", "POST": "create", "PUT": "update", "DELETE": "delete"}


def load_api_client(settings: Kubernetes) -> client.ApiClient | None:
    """An ApiClient for `settings.mode`, or None when the daemon runs without Kubernetes."""
    if settings.mode == "offline":
        return None
    configuration = client.Configuration()
    in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and (SERVICE_ACCOUNT / "token").exists()
    if settings.mode == "in-cluster" or (settings.mode == "auto" and in_cluster):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as exc:
            raise ConfigError(
                f"daemon.kubernetes.mode is in-cluster, but {exc}: run in a pod with a "
                "ServiceAccount, or set mode: kubeconfig"
            ) from exc
    else:
        path = settings.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        path = os.path.expanduser(path or "~/.kube/config")
        if not os.path.exists(path):
            if settings.mode == "auto":
                return None
            raise ConfigError(
                f"daemon.kubernetes.kubeconfig: {path} does not exist; give the path of a "
                "kubeconfig, or set mode: in-cluster or offline"
            )
        try:
            config.load_kube_config(
                config_file=path, context=settings.context, client_configuration=configuration
            )
        except (config.ConfigException, OSError, ValueError) as exc:
            raise ConfigError(f"daemon.kubernetes: cannot use kubeconfig {path}: {exc}") from exc
    configuration.retries = 0  # KubeApi retries, bounded; urllib3's own retries would hide the time
    return client.ApiClient(configuration)


def in_cluster_namespace() -> str | None:
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip() or None
    except OSError:
        return None


class KubeApi:
    """GET, LIST, PATCH and POST by API path. Temporary failures (unreachable, timeouts, 5xx,
    429) are tried `attempts` times with backoff; others raise ActionError at once."""

    def __init__(
        self,
        api_client: client.ApiClient,
        timeout: float = 10.0,
        attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.attempts = attempts
        self.sleep = sleep

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        items: list[dict[str, Any]] = self.request("GET", path, query=query).get("items") or []
        return items

    def patch(
        self, path: str, body: Any, content_type: str, dry_run: bool = False
    ) -> dict[str, Any]:
        """PATCH `path`; with `dry_run` the server admits, validates and authorizes the patch
        as it would for real (`dryRun=All`) and answers with the result, storing nothing."""
        query = {"dryRun": "All"} if dry_run else None
        return self.request("PATCH", path, body=body, content_type=content_type, query=query)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body, content_type="application/json")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: dict[str, str] | None = None,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        attempts = attempts or self.attempts
        delay = 0.5
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, path, body, content_type, query)
            except ActionError as exc:
                if exc.kind != "temporary" or attempt == attempts:
                    if exc.kind == "temporary":
                        spent = time.monotonic() - started
                        raise ActionError(
                            f"{exc} (gave up after {attempt} attempts over {spent:.1f} s)",
                            "temporary",
                            exc.status,
                        ) from exc
                    raise
            self.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _once(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
        query: dict[str, str] | None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        serialized = self.api_client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(*serialized, _request_timeout=self.timeout)
            response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ActionError(
                f"Kubernetes API unreachable ({method} {path}): {type(exc).__name__}: {exc}",
                "temporary",
            ) from exc
        except client.ApiException as exc:  # TLS failures arrive as status 0
            raise ActionError(f"Kubernetes API {method} {path}: {exc.reason}", "temporary") from exc
        data = response.data or b"{}"
        if 200 <= response.status < 300:
            parsed: dict[str, Any] = json.loads(data)
            return parsed
        raise api_error(method, path, response.status, data)


def api_error(method: str, path: str, status: int, data: bytes) -> ActionError:
    """The ActionError for an error answer, saying what to do about it."""
    try:
        message = str(json.loads(data).get("message") or "")
    except (ValueError, AttributeError):
        message = data[:200].decode(errors="replace")
    what = describe(path)
    if status in (429, 500, 502, 503, 504):
        return ActionError(f"{method} {what}: HTTP {status}: {message}", "temporary", status)
    if status == 409:
        return ActionError(f"{method} {what}: conflict: {message}", "conflict", status)
    if status in (401, 403):
        return ActionError(
            f"{method} {what} is forbidden (HTTP {status}): {message}. Grant mlwatchdog's "
            f"ServiceAccount this RBAC rule: {rbac_rule(method, path)}",
            "permanent",
            status,
        )
    if status == 404:
        return ActionError(
            f"{what} not found (HTTP 404): check workload.name and workload.namespace in "
            "rules.yaml, and that the CRD is installed",
            "permanent",
            status,
        )
    return ActionError(f"{method} {what}: HTTP {status}: {message}", "permanent", status)


def describe(path: str) -> str:
    """'rollouts.argoproj.io models/fraud-model (status)' for an API path."""
    match = _PATH.match(path)
    if not match:
        return path
    group = match["group"] or ""
    kind = f"{match['resource']}.{group}" if group else match["resource"]
    where = "/".join(p for p in (match["ns"], match["name"]) if p)
    sub = f" ({match['sub']})" if match["sub"] else ""
    return f"{kind} {where}{sub}".strip()


def rbac_rule(method: str, path: str) -> str:
    match = _PATH.match(path)
    if not match:
        return f"{_VERBS.get(method, method.lower())} on {path}"
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    verb = _VERBS.get(method, method.lower())
    if method == "GET" and not match["name"]:
        verb = "list"
    group = match["group"] or ""
    where = f" in namespace {match['ns']}" if match["ns"] else ""
    return f'apiGroups: ["{group}"], resources: ["{resource}"], verbs: ["{verb}"]{where}'
