"""Credentials over real HTTP: the daemon's app (`create_app`) served by uvicorn with the daemon's
limits, talked to with raw sockets where it matters when the server answers. A caller without
credentials is refused before a byte of its body is read; one with credentials cannot send more
than the limit; a malformed header is a 401, never a 500."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml

from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.rules import load_config
from tests.e2e.daemon_process import TARGET, write_config
from tests.kube.apiserver import FakeKubeAPI
from tests.servers.limited_http import connect, read_response, settings, status, thread_server

OPS = "ops-token-abcdefghijklmnop"
GRAFANA = "grafana-token-0123456789"
HUGE = 250 * 2**20


def daemon_config(tmp_path: Path, **auth: Any) -> Path:
    path = write_config(tmp_path, 0)
    rules = yaml.safe_load(path.read_text())
    rules["daemon"]["auth"] = auth
    rules["daemon"]["http"]["max_body_bytes"] = 64 * 1024
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    """The daemon's app with tokens and a basic user, on a free port (the scheduler not
    started: nothing here needs evaluations)."""
    path = daemon_config(
        tmp_path,
        tokens=[
            {"name": "ops", "token": OPS},
            {"name": "grafana", "token": GRAFANA, "roles": ["alerts"]},
        ],
        basic=[{"username": "alertmanager", "password": "am-password-123456", "roles": ["alerts"]}],
    )
    daemon = Daemon(load_config(path), structlog.get_logger(), config_path=path)
    with thread_server(create_app(daemon), settings(body_timeout="20s"), "httptools+uvloop") as s:
        yield s.port


def head(method: str, path: str, length: int, authorization: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: mlwatchdog", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}")
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_to_a_huge_body(port: int, authorization: str | None) -> tuple[int | None, int, float]:
    """POST a 250 MiB alert: the head and 1 MiB of the body, then wait for an answer. Returns
    its status, the bytes sent, and the seconds it took."""
    sock = connect(port)
    started = time.monotonic()
    sock.sendall(head("POST", "/api/v1/alerts", HUGE, authorization))
    sent = 0
    sock.settimeout(0.05)
    chunk = b"[" * 65536
    for _ in range(16):  # keep sending a little, as a client does, until answered
        try:
            sock.send(chunk)
            sent += len(chunk)
        except (BlockingIOError, TimeoutError, OSError):
            break
    sock.settimeout(10)
    response = read_response(sock)
    elapsed = time.monotonic() - started
    sock.close()
    return status(response), sent, elapsed


def test_no_credentials_no_body_read(served: int) -> None:
    code, sent, seconds = answer_to_a_huge_body(served, None)
    assert code == 401
    assert sent <= 2**20 and seconds < 5  # answered from the head, long before 250 MiB


def test_wrong_role_refused_from_the_head_too(served: int) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{served}/-/reload", headers={"Authorization": f"Bearer {GRAFANA}"}
    )
    assert response.status_code == 403
    assert "grafana" in response.json()["detail"] and "'operate'" in response.json()["detail"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(served: int) -> None:
    code, _, seconds = answer_to_a_huge_body(served, f"Bearer {OPS}")
    assert code == 413 and seconds < 5


def test_a_chunked_body_over_the_limit_is_cut(served: int) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 4096  # 256 KiB in all, without a Content-Length

    response = httpx.post(
        f"http://127.0.0.1:{served}/api/v1/alerts",
        content=chunks(),
        headers={"Authorization": f"Bearer {OPS}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "daemon.http.max_body_bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!notbase64",
        "Basic " + "é" * 8,
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
        "Negotiate abc",
    ],
)
def test_malformed_credentials_are_401_never_500(served: int, header: str) -> None:
    sock = connect(served)
    body = b'{"alerts": []}'
    sock.sendall(head("POST", "/api/v1/alerts", len(body), header).replace(b"\xc3\xa9", b"\xe9"))
    sock.sendall(body)
    assert status(read_response(sock)) == 401
    sock.close()


def test_the_right_credentials_get_through(served: int) -> None:
    base = f"http://127.0.0.1:{served}"
    grafana = {"Authorization": f"Bearer {GRAFANA}"}
    alert = {"alerts": [{"status": "firing", "labels": {"target": "nobody"}}]}
    answer = httpx.post(f"{base}/api/v1/alerts", json=alert, headers=grafana)
    assert answer.status_code == 200 and answer.json()["unmatched"] == 1
    basic = "Basic " + base64.b64encode(b"alertmanager:am-password-123456").decode()
    answer = httpx.post(f"{base}/api/v1/alerts", json=alert, headers={"Authorization": basic})
    assert answer.status_code == 200
    listed = httpx.get(f"{base}/api/v1/targets", headers={"Authorization": f"Bearer {OPS}"})
    assert listed.status_code == 200 and [t["name"] for t in listed.json()] == [TARGET]
    for path in ("/healthz", "/metrics"):
        assert httpx.get(base + path).status_code == 200
    deep = b"[" * 100_000 + b"]" * 100_000  # within no limit of ours but too deep to parse
    answer = httpx.post(
        f"{base}/api/v1/alerts",
        content=deep[: 30 * 1024] + deep[-30 * 1024 :],
        headers={**grafana, "Content-Type": "application/json"},
    )
    assert answer.status_code in (400, 422)


def test_unknown_paths_reveal_nothing_without_credentials(served: int) -> None:
    base = f"http://127.0.0.1:{served}"
    assert httpx.get(f"{base}/no/such/path").status_code == 401
    assert httpx.get(f"{base}/openapi.json").status_code == 401
    assert (
        httpx.get(f"{base}/openapi.json", headers={"Authorization": f"Bearer {OPS}"}).status_code
        == 200
    )


def test_a_refused_connection_is_closed(served: int) -> None:
    """After a 401 the server closes the connection: the unread body can never be taken for
    the next request, and the socket is not held."""
    sock = connect(served)
    sock.sendall(head("POST", "/api/v1/alerts", 1000, None) + b"x" * 10)
    response = read_response(sock)
    assert status(response) == 401 and b"connection: close" in response.lower()
    sock.settimeout(5)
    try:
        rest = sock.recv(65536)
    except ConnectionResetError:
        rest = b""
    assert rest == b""  # closed
    sock.close()


SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJncmFmYW5hIn0.c2lnbmF0dXJl"  # a JWT's shape


def test_serviceaccount_tokens_through_a_tokenreview(tmp_path: Path) -> None:
    """A Grafana in the cluster proves who it is with its ServiceAccount token: the daemon asks
    the (emulated) Kubernetes API, once per cache period; when the API cannot answer, the caller
    gets 503 (and retries), never a way in."""
    with FakeKubeAPI() as kube:
        kube.add_token(SA_TOKEN, "system:serviceaccount:monitoring:grafana")
        kube.add_token("a.b.c", "system:serviceaccount:default:curious")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        path = daemon_config(
            tmp_path,
            kubernetes={
                "service_accounts": [
                    {"service_account": "monitoring:grafana", "roles": ["alerts", "read"]}
                ]
            },
        )
        rules = yaml.safe_load(path.read_text())
        rules["daemon"]["kubernetes"] = {"mode": "kubeconfig", "kubeconfig": str(kubeconfig)}
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        daemon = Daemon(load_config(path), structlog.get_logger(), config_path=path)
        with thread_server(create_app(daemon), settings(), "httptools+uvloop") as served:
            base = f"http://127.0.0.1:{served.port}"
            grafana = {"Authorization": f"Bearer {SA_TOKEN}"}
            assert httpx.get(f"{base}/api/v1/targets", headers=grafana).status_code == 200
            assert httpx.get(f"{base}/api/v1/targets", headers=grafana).status_code == 200
            reviews = [r for r in kube.requests if r.path.endswith("/tokenreviews")]
            assert len(reviews) == 1 and reviews[0].body["spec"]["token"] == SA_TOKEN
            assert httpx.post(f"{base}/-/reload", headers=grafana).status_code == 403
            curious = {"Authorization": "Bearer a.b.c"}  # authenticated, but not allowed here
            assert httpx.get(f"{base}/api/v1/targets", headers=curious).status_code == 401

            kube.fail("POST", r"/tokenreviews$", 503, times=None)
            unknown = {"Authorization": "Bearer x.y.z"}
            answer = httpx.get(f"{base}/api/v1/targets", headers=unknown)
            assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
            # A token reviewed before stays good for its cache period.
            assert httpx.get(f"{base}/api/v1/targets", headers=grafana).status_code == 200


def test_readyz_names_a_failing_write_without_a_secret_in_its_error(tmp_path: Path) -> None:
    """/readyz answers without credentials: a write's error quoting a secret (a store's message
    with the URL it was given) shows it masked, in the answer as in the log."""
    path = daemon_config(tmp_path, tokens=[{"name": "ops", "token": OPS}])
    daemon = Daemon(load_config(path), structlog.get_logger(), config_path=path)
    daemon.faults.report("audit", f"https://ops:{OPS}@audit.example/log", f"403 for token {OPS}")
    with thread_server(create_app(daemon), settings(), "httptools+uvloop") as server:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=10)
    assert answer.status_code == 503
    assert OPS not in answer.text
    assert answer.json()["failing_writes"] == {
        "audit at https://ops:***@audit.example/log": "403 for token ***"
    }
