"""A real Prometheus for integration tests: loaded with history through promtool, or scraping an
exporter in the test process; and a canned stand-in API that records what a client sends.

Backfill, as learned with Prometheus/promtool 2.42 (Debian):
- `promtool tsdb create-blocks-from openmetrics FILE DIR` wants timestamps in seconds and `# EOF`
  last; it cuts 2h-aligned blocks and silently drops a series' out-of-order samples, so write each
  series' samples in time order (`OpenMetrics` refuses anything else).
- Prometheus loads the blocks at startup, whatever their age: old, recent (overlapping the head's
  range) and even future blocks are queryable, because overlapping blocks are always allowed since
  2.39. The "history must be older than 2h" advice is from older versions.
- What does bite: time retention (15d by default) counts back from the newest block, not from
  the clock, and deletes older blocks at startup with only an info log line: months-old history
  survives alone but vanishes next to a recent block. Hence `--storage.tsdb.retention.time=100y`.
- Blocks written into the directory of a running Prometheus only show up after its next reload,
  so backfill first, then start.

A live Prometheus scrapes for the first time ~5 s after it is ready (its scrape manager applies
targets on a 5 s tick), whatever `scrape_interval` says; `wait_for` covers it.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from prometheus_client import CollectorRegistry, start_http_server

from tests.servers.ports import free_port

INSTALL_HINT = "run `make test` as root; it apt-get installs prometheus"
READY_TIMEOUT = 30.0


def binaries() -> tuple[str, str]:
    """The prometheus and promtool executables; skips the test when either is missing."""
    found = [shutil.which(name) or f"/usr/bin/{name}" for name in ("prometheus", "promtool")]
    missing = [path for path in found if not Path(path).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found; {INSTALL_HINT}")
    return found[0], found[1]


# ------------------------------------------------------------------------------------ history


class OpenMetrics:
    """OpenMetrics text for promtool: families of series, each series' samples in time order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str) -> None:
        self.lines.append(f"# TYPE {name} {kind}")

    def series(
        self, name: str, labels: Mapping[str, str], samples: Iterable[tuple[float, float]]
    ) -> None:
        """Samples as (unix seconds, value); out of order would be dropped by promtool silently."""
        pairs = ",".join(f'{k}="{v}"' for k, v in labels.items())
        last = -math.inf
        for stamp, value in samples:
            if stamp <= last:
                raise ValueError(f"{name}{{{pairs}}}: sample at {stamp} is not after {last}")
            last = stamp
            self.lines.append(f"{name}{{{pairs}}} {float(value)!r} {stamp:.3f}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n# EOF\n"


def backfill(openmetrics_text: str, data_dir: Path) -> str:
    """Write the samples as TSDB blocks into `data_dir`; returns promtool's block table."""
    _, promtool = binaries()
    source = data_dir.parent / "history.om"
    source.write_text(openmetrics_text, encoding="utf-8")
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"promtool failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


# ---------------------------------------------------------------------------------- prometheus


@dataclass
class PrometheusServer:
    """A running Prometheus on loopback; `stop()` ends it (tests of a server that went down)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, promql: str, at: float | None = None) -> Any:
        """The raw `data` of an instant query (at `at`, or now)."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> Any:
        """The raw `data` of a range query, as Grafana's time series panels ask it."""
        params = {"query": promql, "start": start, "end": end, "step": step}
        response = requests.get(f"{self.url}/api/v1/query_range", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def label_values(self, label: str, match: str) -> list[str]:
        """The values of `label` on the series `match` selects: Grafana's label_values()."""
        response = requests.get(
            f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=5
        )
        response.raise_for_status()
        values: list[str] = response.json()["data"]
        return values

    def wait_for(self, promql: str, expected: float, timeout: float = 20.0) -> None:
        """Wait until the query's single series has `expected` as its latest value."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            seen = self.query(promql)["result"]
            if len(seen) == 1 and float(seen[0]["value"][1]) == expected:
                return
            time.sleep(0.2)
        raise AssertionError(f"{promql} never became {expected} within {timeout}s; last {seen}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_prometheus(
    workdir: Path, scrape: Sequence[str] = (), scrape_interval: str = "1s"
) -> PrometheusServer:
    """Prometheus on a free loopback port with its TSDB in `workdir/data` (backfill it first),
    scraping the `host:port` addresses in `scrape`; returns once /-/ready answers."""
    prometheus, _ = binaries()
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [{"job_name": "exporter", "static_configs": [{"targets": list(scrape)}]}]
        if scrape
        else [],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    for _attempt in range(3):  # the free port can be taken before Prometheus binds it
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    "--storage.tsdb.retention.time=100y",  # keep old backfilled blocks
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
        if _wait_ready(server):
            return server
        server.stop()
        if "address already in use" not in log.read_text(errors="replace"):
            break
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Prometheus did not become ready in {READY_TIMEOUT}s:\n{tail}")


def _wait_ready(server: PrometheusServer) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)
    return False


@contextmanager
def running_prometheus(
    history: str | None = None, scrape: Sequence[str] = ()
) -> Iterator[PrometheusServer]:
    """A Prometheus (with the OpenMetrics `history` backfilled, if given) scraping `scrape`;
    stopped and its files removed at exit."""
    with tempfile.TemporaryDirectory(prefix="mlwatchdog-prom-") as tmp:
        workdir = Path(tmp)
        if history is not None:
            backfill(history, workdir / "data")
        server = start_prometheus(workdir, scrape)
        try:
            yield server
        finally:
            server.stop()


def prometheus_with_history(
    openmetrics_text: str, scrape: Sequence[str] = ()
) -> AbstractContextManager[PrometheusServer]:
    """A Prometheus whose TSDB holds the OpenMetrics samples (see the module notes)."""
    return running_prometheus(openmetrics_text, scrape)


# ------------------------------------------------------------------------------------ exporter


@dataclass
class Exporter:
    """A prometheus_client HTTP exporter in the test process; add metrics to `registry`."""

    registry: CollectorRegistry
    address: str
    server: Any

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()  # its own: the process-wide default registry is shared
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    running = Exporter(registry, f"127.0.0.1:{port}", server)
    try:
        yield running
    finally:
        running.stop()


# ----------------------------------------------------------------------------------- canned API


@dataclass(frozen=True)
class Captured:
    """One request the canned API received."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class CannedApi:
    """A stand-in HTTP API on loopback: answers every GET with the set body, status and delay,
    and keeps each request (to check what a client sends, and answers Prometheus never gives)."""

    body: str = '{"status":"success","data":{"resultType":"vector","result":[]}}'
    status: int = 200
    delay: float = 0.0
    received: list[Captured] = field(default_factory=list)
    url: str = ""

    def respond(self, body: str | Mapping[str, Any], status: int = 200, delay: float = 0.0) -> None:
        self.body = body if isinstance(body, str) else json.dumps(body)
        self.status, self.delay = status, delay


@contextmanager
def canned_api() -> Iterator[CannedApi]:
    api = CannedApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            api.received.append(Captured(parts.path, params, dict(self.headers.items())))
            time.sleep(api.delay)
            payload = api.body.encode()
            try:
                self.send_response(api.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (a timeout test)
                pass

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="canned-api", daemon=True
    )  # a short poll interval: shutdown() waits for one
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
