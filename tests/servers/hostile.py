"""Hostile and sloppy callers of a real daemon, and its memory while they call: the inputs issue 12
hardened it against (bodies and headers of hundreds of MiB, slow connections, deeply nested and
bloated events, events from the wrong century, wrong credentials, a YAML alias bomb), each sent to a
`mlwatchdog run` process, with its RSS read after each. Used by tests/e2e/test_hostile_inputs.py
(which asserts the bound) and benchmarks/hostile_bench.py (which records the figures)."""

from __future__ import annotations

import base64
import json
import select
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from tests.e2e.daemon_process import (
    TARGET,
    DaemonProcess,
    evaluations,
    value,
    wait_for,
    write_config,
)

TOKEN = "hostile-test-token-0123456789"
SINK_TARGET = "credit-sink"
ISVC, NAMESPACE = "credit", "models"
MIB = 2**20
HEADER_TIMEOUT = 2.0  # seconds: short, so slow connections are cut within the run


def hostile_config(tmp_path: Path, port: int) -> Path:
    """The e2e harness's rules with credentials, HTTP limits, the KServe sink and a second target
    reading it."""
    path = write_config(tmp_path, port)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    daemon = rules["daemon"]
    daemon["auth"] = {"tokens": [{"name": "ops", "token": TOKEN}]}
    daemon["http"].update(header_timeout=f"{HEADER_TIMEOUT:g}s", body_timeout="5s")
    daemon["sink"] = {"path": str(tmp_path / "sink"), "max_event_bytes": 512 * 1024}
    rules["sources"]["inferences"] = {"type": "kserve", "inference_service": ISVC}
    (files_target,) = rules["targets"]
    files_target["interval"] = "1s"  # `settle` waits for evaluations after every input
    rules["targets"].append(
        {
            "name": SINK_TARGET,
            "interval": files_target["interval"],
            "samples": {"source": "inferences", "window": "1m", "min_samples": 10},
            "reference": {"source": "training"},
            "columns": {
                "features": {"age": "numeric", "income": "numeric"},
                "predictions": {"score": "numeric"},
            },
            "checks": [{"name": "drift", "type": "drift", "test": "ks", "columns": "features"}],
        }
    )
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def rss(daemon: DaemonProcess) -> int:
    return int(psutil.Process(daemon.proc.pid).memory_info().rss)


# ------------------------------------------------------------------------------------ callers


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: mlwatchdog",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(sock: socket.socket, timeout: float = 15.0) -> int | None:
    """The status of the first answer on `sock` (None if it closed without one)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _stream(port: int, head: bytes, total: int, chunk: bytes) -> tuple[int | None, int]:
    """Send `head` then up to `total` bytes of `chunk`s until the server answers or closes;
    its status and how much was sent."""
    sock = socket.create_connection(("127.0.0.1", port))
    sent = 0
    try:
        sock.sendall(head)
        sock.settimeout(0.2)
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # answered (or closed): a client stops sending then
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break
        return _status(sock), sent
    finally:
        sock.close()


def huge_body_without_credentials(port: int) -> str:
    head = _head("POST", "/api/v1/alerts", {"Content-Length": str(250 * MIB)})
    status, sent = _stream(port, head, 250 * MIB, b"[" * 65536)
    assert status == 401, status
    return f"401 after {sent / MIB:.1f} MiB sent"


def huge_body_with_credentials(port: int) -> str:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    head = _head("POST", "/api/v1/alerts", {**auth, "Content-Length": str(250 * MIB)})
    declared, _ = _stream(port, head, 250 * MIB, b" " * 65536)
    chunked, sent = _stream(
        port,
        _head("POST", "/api/v1/alerts", {**auth, "Transfer-Encoding": "chunked"}),
        250 * MIB,
        b"10000\r\n" + b" " * 65536 + b"\r\n",
    )
    assert declared == 413 and chunked == 413, (declared, chunked)
    return f"413 (declared), 413 after {sent / MIB:.1f} MiB (chunked)"


def huge_header(port: int) -> str:
    status, sent = _stream(
        port, b"GET /api/v1/targets HTTP/1.1\r\nX-Junk: ", 200 * MIB, b"a" * 65536
    )
    assert status == 431, status
    return f"431 after {sent / MIB:.1f} MiB sent"


def slow_connections(port: int, count: int = 300) -> str:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /api/v1/targets HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        socks.append(sock)
    started = time.monotonic()
    closed = 0
    for sock in socks:
        sock.settimeout(max(0.1, HEADER_TIMEOUT * 3 - (time.monotonic() - started)))
        try:
            while sock.recv(4096):
                pass
            closed += 1
        except ConnectionResetError:
            closed += 1
        except TimeoutError:
            pass  # still open: counted as not closed
        sock.close()
    assert closed == count, f"{count - closed} of {count} slow connections still open"
    return f"{count} held, all closed by the server within {time.monotonic() - started:.1f} s"


def _event(kind: str, body: bytes, **overrides: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": overrides.pop("id", str(uuid.uuid4())),
        "ce-type": f"org.kubeflow.serving.inference.{kind}",
        "ce-source": "http://localhost:9081/",
        "ce-time": overrides.pop("time", datetime.now(UTC).isoformat()),
        "ce-inferenceservicename": ISVC,
        "ce-namespace": NAMESPACE,
        "ce-component": "predictor",
        "ce-endpoint": "default",
        **overrides,
    }
    return headers, body


def _post_events(port: int, events: list[tuple[dict[str, str], bytes]]) -> list[int]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        return [client.post("/sink/kserve", headers=h, content=b).status_code for h, b in events]


def deep_events(port: int, count: int = 200) -> str:
    deep = b"[" * 200_000 + b"]" * 200_000
    binary = [_event("request", b'{"instances": ' + deep + b"}") for _ in range(count // 2)]
    structured = {
        "specversion": "1.0", "id": "x", "type": "org.kubeflow.serving.inference.request",
        "source": "s", "inferenceservicename": ISVC, "namespace": NAMESPACE, "data": "PLACE",
    }  # fmt: skip
    text = json.dumps(structured).replace('"PLACE"', deep.decode()).encode()
    cloud = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/cloudevents+json"}
    codes = _post_events(port, binary) + _post_events(port, [(cloud, text)] * (count // 2))
    assert set(codes) == {400}, set(codes)
    return f"{len(codes)} x 400 (400 KB, 200,000 deep)"


def bloated_events(port: int, count: int = 10) -> str:
    """Events of ~300 KB with the longest id the sink takes (256 characters; a 1 KB one is refused
    with 400): each stored once, not once per row."""
    rows = 15_000
    events = []
    for i in range(count):
        key = f"{i:04d}-" + "k" * 251
        request = json.dumps({"instances": [[40.0 + i % 7, 50.0]] * rows}).encode()
        response = json.dumps({"predictions": [0.5] * rows}).encode()
        events += [_event("request", request, id=key), _event("response", response, id=key)]
    codes = _post_events(port, events)
    assert set(codes) == {200}, set(codes)
    size = sum(len(b) for _, b in events)
    return f"{count} pairs of {size / count / 2 / 1024:.0f} KB, 256-byte ids, {rows:,} rows each"


def events_with_long_ids(port: int, count: int = 20) -> str:
    """The issue's case: a 300 KB event with a 1 KB id (once stored with the id on every row)."""
    body = json.dumps({"instances": [[40.0, 50.0]] * 20_000}).encode()
    codes = _post_events(port, [_event("request", body, id="k" * 1024) for _ in range(count)])
    assert set(codes) == {400}, set(codes)
    return f"{count} x 400 ({len(body) / 1024:.0f} KB events, 1 KB ids)"


def events_from_another_century(port: int, count: int = 200) -> str:
    body = json.dumps({"instances": [[40.0, 50.0]]}).encode()
    future = [_event("request", body, time="2999-01-01T00:00:00Z") for _ in range(count // 2)]
    past = [_event("request", body, time="1971-01-01T00:00:00Z") for _ in range(count // 2)]
    codes = _post_events(port, future + past)
    assert set(codes) == {422}, set(codes)
    return f"{count} x 422"


def wrong_credentials(port: int, count: int = 2000) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        codes = set()
        for i in range(count):
            header: bytes
            if i % 10 == 0:  # not base64, not ASCII
                header = b"Basic " + base64.b64encode(bytes([i % 256]) * 40) + "é".encode()
            else:
                header = f"Bearer {uuid.uuid4().hex}.{uuid.uuid4().hex}.{i}".encode()
            codes.add(client.get("/api/v1/targets", headers={"Authorization": header}).status_code)
    assert codes == {401}, codes
    return f"{count} x 401"


def alias_bomb(port: int, config: Path) -> str:
    good = config.read_text()
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    config.write_text(good + bomb)
    started = time.monotonic()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            answer = client.post("/-/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        config.write_text(good)
    seconds = time.monotonic() - started
    assert answer.status_code == 409 and "alias" in answer.text.lower(), answer.text[:300]
    return f"409 in {seconds:.2f} s ({len(bomb)} bytes expanding to 10^9 values)"


@dataclass
class Step:
    name: str
    outcome: str
    rss: int


def attack(daemon: DaemonProcess, config: Path, log: Callable[[str], None] = print) -> list[Step]:
    """Every hostile input in turn against `daemon` (started from `hostile_config`); the RSS
    before (after two evaluations of each target and a few valid events) and after each."""
    port = daemon.port
    body = json.dumps({"instances": [[41.0, 49.0]] * 20}).encode()
    for _ in range(5):
        key = str(uuid.uuid4())
        response = json.dumps({"predictions": [0.4] * 20}).encode()
        _post_events(port, [_event("request", body, id=key), _event("response", response, id=key)])
    settle(daemon)
    steps = [Step("baseline: evaluating, a few valid events", "", rss(daemon))]
    for name, call in [
        ("250 MiB webhook body, no credentials", lambda: huge_body_without_credentials(port)),
        ("250 MiB webhook body, with credentials", lambda: huge_body_with_credentials(port)),
        ("200 MiB request header", lambda: huge_header(port)),
        ("300 slow connections (slowloris)", lambda: slow_connections(port)),
        ("200 sink events nested 200,000 deep", lambda: deep_events(port)),
        ("300 KB sink events with 1 KB ids", lambda: events_with_long_ids(port)),
        ("bloated sink events (then evaluated)", lambda: bloated_events(port)),
        ("200 sink events from 2999 and 1971", lambda: events_from_another_century(port)),
        ("2,000 wrong or malformed credentials", lambda: wrong_credentials(port)),
        ("a YAML alias bomb reloaded", lambda: alias_bomb(port, config)),
    ]:
        outcome = call()
        settle(daemon)
        steps.append(Step(name, outcome, rss(daemon)))
        log(f"{name}: {outcome}; RSS {steps[-1].rss / MIB:.0f} MiB")
    return steps


def settle(daemon: DaemonProcess) -> None:
    """Wait until every target has been evaluated twice more (the sink's events read)."""
    for target in (TARGET, SINK_TARGET):
        done = evaluations_of(daemon, target)
        wait_for(
            daemon, f"2 evaluations of {target}",
            lambda t=target, d=done: evaluations_of(daemon, t) >= d + 2, timeout=60,
        )  # fmt: skip
    assert evaluations(daemon) > 0


def evaluations_of(daemon: DaemonProcess, target: str) -> float:
    return value(daemon.metrics(), "mlwatchdog_evaluations_total", target=target) or 0.0
