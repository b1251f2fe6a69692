"""KServe sink benchmark: logger events per second into the daemon over loopback, durably stored;
and (`--read`) what reading a window of stored events costs.

    .venv/bin/python benchmarks/sink_bench.py [--pairs 10000] [--concurrency 32] [--clients 1]
                                              [--compare]
    .venv/bin/python benchmarks/sink_bench.py --read [--rows 150000] [--batch 15000]

The daemon's app (uvicorn, the real `/sink/kserve` route and `SinkStore`) runs in a child
process; httpx async clients (`--clients` processes) send `--pairs` request + response event
pairs shaped like KServe's payload logger (binary-mode CloudEvents, a v1 body of 20 features and
one prediction), `--concurrency` in flight in all. Every 200 means the event's row was written and
fsynced (group commit: one fsync for all the events that arrived during the previous one).
Reported: events/s, latency percentiles, events per fsync, and the server's CPU per event (less
sensitive than events/s to other load on the machine). `--compare` runs again with one fsync per
event (batches of one). Afterwards every pair is read back with KServeReader; the exit status is 1
if any is missing. The "store only" lines time `SinkStore` alone (`--concurrency` threads appending
parsed events), for scale: what the durable store sustains without HTTP.

`--read` stores a window of `--rows` sample rows (request + response events of `--batch` rows:
two features, one prediction) and reads it with `KServeReader` in a fresh child process, and the
same way as before issue 12 (each line parsed to Python lists and kept; the row-by-row pairing
kept in tests/unit/kserve_pairing_oracle.py), side by side: the first read (parse and pair), a
second read (from the reader's cache), the process' RSS growth, and, in a second child under
tracemalloc, the peak allocation and what the reader keeps for its next read.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from mlwatchdog.rules import KServeSource, Sink, parse_config
from mlwatchdog.sources.kserve import REQUEST, RESPONSE, Event, KServeReader, SinkStore, decode
from mlwatchdog.sources.kserve.lines import stamp

FEATURES = [f"f{i}" for i in range(20)]


def config_text(directory: Path) -> str:
    features = ", ".join(f"{name}: numeric" for name in FEATURES)
    return f"""
version: 1
daemon:
  state_dir: {directory / "state"}
  log_level: warning
  sink: {{path: {directory / "sink"}, pair_timeout: 1m}}
sources:
  inferences: {{type: kserve, inference_service: bench}}
  training: {{type: kserve, inference_service: nothing}}
targets:
  - name: bench
    interval: 1h
    samples: {{source: inferences, window: 1m}}
    reference: {{source: training}}
    columns: {{features: {{{features}}}, predictions: {{score: numeric}}}}
    checks: [{{name: drift, type: drift, test: ks}}]
"""


# --------------------------------------------------------------------------------- the server


def serve(config_path: str, port: int, max_batch: int | None) -> None:
    """The daemon's app on `port` until SIGTERM; then prints the store's fsync count."""
    import uvicorn

    from mlwatchdog.daemon.app import create_app
    from mlwatchdog.daemon.logs import configure_logging
    from mlwatchdog.daemon.service import Daemon
    from mlwatchdog.sources.kserve import store

    if max_batch is not None:
        store._MAX_BATCH = max_batch  # --compare: one fsync per event
    config = parse_config(Path(config_path).read_text())
    daemon = Daemon(config, configure_logging("warning"))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(daemon), host="127.0.0.1", port=port, log_config=None, access_log=False
        )
    )
    # uvicorn re-raises the SIGTERM it stopped on: under this handler that does not kill us.
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()
    assert daemon.sink is not None
    print(json.dumps({"commits": daemon.sink.commits}), flush=True)


# --------------------------------------------------------------------------------- the client


def headers(kind: str, ce_id: str, at: datetime) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-type": REQUEST if kind == "request" else RESPONSE,
        "ce-source": "http://localhost:9081/",
        "ce-time": at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z",
        "ce-inferenceservicename": "bench",
        "ce-namespace": "models",
        "ce-component": "predictor",
        "ce-endpoint": "default",
        "content-type": "application/json",
    }


def events(pairs: int, first: int = 0) -> list[tuple[str, str, bytes]]:
    """(kind, ce-id, body) for each event: a request then its response, pair by pair."""
    rng = np.random.default_rng(first)
    values = rng.normal(size=(pairs, len(FEATURES))).round(6)
    out = []
    for i, row in enumerate(values):
        ce_id = f"e{first + i}"
        out.append(("request", ce_id, json.dumps({"instances": [row.tolist()]}).encode()))
        out.append(("response", ce_id, json.dumps({"predictions": [float(first + i)]}).encode()))
    return out


async def send_all(
    url: str, todo: list[tuple[str, str, bytes]], concurrency: int
) -> tuple[float, list[float]]:
    """Sends every event, `concurrency` at a time; returns the seconds taken and latencies."""
    latencies: list[float] = []
    queue = iter(todo)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for kind, ce_id, body in queue:
            started = time.perf_counter()
            answer = await client.post(
                "/sink/kserve", content=body, headers=headers(kind, ce_id, datetime.now(UTC))
            )
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"{answer.status_code}: {answer.text}")

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(url: str, first: int, pairs: int, concurrency: int) -> tuple[float, float, list[float]]:
    """One client process's share: its start and end (epoch seconds) and its latencies."""
    todo = events(pairs, first)
    started = time.time()
    seconds, latencies = asyncio.run(send_all(url, todo, concurrency))
    return started, started + seconds, latencies


def run(pairs: int, concurrency: int, clients: int, max_batch: int | None) -> dict[str, Any]:
    """One measured run against a fresh daemon process and sink."""
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        directory = Path(tmp)
        config_path = directory / "rules.yaml"
        config_path.write_text(config_text(directory))
        port = free_port()
        command = [sys.executable, __file__, "--serve", str(config_path), "--port", str(port)]
        if max_batch is not None:
            command += ["--max-batch", str(max_batch)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        share = pairs // clients
        spawn = multiprocessing.get_context("spawn")
        try:
            wait_healthy(url, server)
            with ProcessPoolExecutor(clients, mp_context=spawn) as pool:
                warm = [10**7 + 1000 * i for i in range(clients)]  # also imports in each client
                list(pool.map(client, [url] * clients, warm, [100] * clients, [8] * clients))
                cpu_before = psutil.Process(server.pid).cpu_times()
                runs = list(
                    pool.map(
                        client,
                        [url] * clients,
                        [share * i for i in range(clients)],
                        [share] * clients,
                        [concurrency // clients] * clients,
                    )
                )
                cpu_after = psutil.Process(server.pid).cpu_times()
        finally:
            server.send_signal(signal.SIGTERM)
            out, _ = server.communicate(timeout=60)
        commits = json.loads(out.strip().splitlines()[-1])["commits"]
        reader = KServeReader(
            "inferences",
            KServeSource(type="kserve", inference_service="bench"),
            Sink(path=str(directory / "sink")),
            clock=lambda: datetime.now(UTC) + timedelta(hours=1),
        )
        started = time.perf_counter()
        read = reader.read([*FEATURES, "score"])
        read_seconds = time.perf_counter() - started
        frame = read.frame
        stored = 0 if frame is None else int(frame["score"].lt(10**7).sum())
    n = 2 * share * clients
    seconds = max(end for _, end, _ in runs) - min(start for start, _, _ in runs)
    ms = sorted(1000 * x for _, _, latencies in runs for x in latencies)
    cpu = sum(cpu_after[:2]) - sum(cpu_before[:2])  # user + system during the measured part
    return {
        "events": n,
        "events_per_s": n / seconds,
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(0.99 * (len(ms) - 1))],
        "events_per_fsync": (n + 200 * clients) / max(commits, 1),  # with the warm-up's
        "server_cpu_us": 1e6 * cpu / n,
        "ok": stored == n // 2,
        "read_reason": read.reason,
        "read_s": read_seconds,
    }


def store_only(pairs: int, writers: int, max_batch: int | None) -> dict[str, Any]:
    """The store without HTTP: `writers` threads appending parsed events, each awaiting its
    fsync; shows what group commit alone sustains."""
    from mlwatchdog.daemon.sink import parse_event
    from mlwatchdog.sources import kserve
    from mlwatchdog.sources.kserve import store as store_module

    store_module._MAX_BATCH = max_batch or 4096
    now = datetime.now(UTC)
    todo = iter(
        [
            [kserve.event_record(parse_event(headers(kind, ce_id, now), body), now)]
            for kind, ce_id, body in events(pairs)
        ]
    )
    lock = threading.Lock()
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        store = kserve.SinkStore(Sink(path=tmp))

        def writer() -> None:
            while True:
                with lock:
                    records = next(todo, None)
                if records is None:
                    return
                started = time.perf_counter()
                store.write(records).result()
                latencies.append(time.perf_counter() - started)

        threads = [threading.Thread(target=writer) for _ in range(writers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        store.close()
    ms = sorted(1000 * x for x in latencies)
    return {
        "events": 2 * pairs,
        "events_per_s": 2 * pairs / seconds,
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(0.99 * (len(ms) - 1))],
        "events_per_fsync": 2 * pairs / store.commits,
        "server_cpu_us": float("nan"),
        "ok": True,
    }


def wait_healthy(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the daemon did not start")


# --------------------------------------------------------------------------------- --read


READ_COLUMNS = ["age", "income", "score"]
READ_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def store_window(path: str, rows: int, batch: int) -> None:
    """Request + response events of `batch` rows each, `rows` in all, over ten minutes."""
    rng = np.random.default_rng(1)
    meta = {"inference_service": "bench", "namespace": "models", "component": "predictor"}
    store = SinkStore(Sink(path=path))
    for i in range(0, rows, batch):
        n = min(batch, rows - i)
        at = stamp(READ_AT + timedelta(minutes=10) * (i / rows))
        features = np.column_stack([rng.integers(18, 90, n), rng.normal(50, 9, n).round(3)])
        requests = [[int(a), float(b)] for a, b in features]
        responses = [[float(p)] for p in rng.random(n).round(4)]
        store.write(
            [
                Event(at, "request", f"batch-{i}", **meta, endpoint="", rows=requests),
                Event(at, "response", f"batch-{i}", **meta, endpoint="", rows=responses),
            ]
        ).result()
    store.close()


class RowByRow:
    """The reader as it was before issue 12, for comparison: every line parsed to an `Event`
    (rows as Python lists) and kept, then paired by the row-by-row pairing."""

    def __init__(self, path: str) -> None:
        oracle = Path(__file__).resolve().parents[1] / "tests" / "unit" / "kserve_pairing_oracle.py"
        spec = importlib.util.spec_from_file_location("kserve_pairing_oracle", oracle)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
        self.pair = module.pair
        self.path = path
        self.events: list[Event] | None = None

    def read(self, columns: list[str], start: datetime, end: datetime) -> Any:
        if self.events is None:
            files = sorted(Path(self.path).rglob("*.jsonl"))
            self.events = [decode(line) for f in files for line in f.read_bytes().splitlines()]
        spec = KServeSource(type="kserve", inference_service="bench")
        settled = datetime.now(UTC) - timedelta(minutes=1)
        return self.pair(self.events, columns, spec, settled, start, end)[0]


def read_child(path: str, how: str, traced: bool) -> None:
    """One measured read in this fresh process; prints its figures as JSON."""
    window = (READ_AT - timedelta(minutes=1), READ_AT + timedelta(hours=1))
    if how == "new":
        sink = Sink(path=path, pair_timeout=timedelta(minutes=1))
        reader: Any = KServeReader("bench", KServeSource(type="kserve"), sink)
    else:
        reader = RowByRow(path)
    gc.collect()
    rss = psutil.Process().memory_info().rss
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    got = reader.read(READ_COLUMNS, *window)
    seconds = time.perf_counter() - started
    frame = got if how == "old" else got.frame
    rows = len(frame)
    del got, frame
    gc.collect()
    figures: dict[str, Any] = {"rows": rows}
    if traced:
        held, peak = tracemalloc.get_traced_memory()
        figures.update(peak_mib=peak / 2**20, held_mib=held / 2**20)
    else:
        figures.update(read_s=seconds, rss_mib=(psutil.Process().memory_info().rss - rss) / 2**20)
        started = time.perf_counter()
        reader.read(READ_COLUMNS, *window)
        figures["again_s"] = time.perf_counter() - started
    print(json.dumps(figures), flush=True)


def read_bench(rows: int, batch: int) -> int:
    with tempfile.TemporaryDirectory(prefix="sink-read-") as tmp:
        store_window(tmp, rows, batch)
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*.jsonl"))
        print(
            f"{rows:,} rows ({batch:,} a batch, {READ_COLUMNS}), {size / 2**20:.1f} MiB of lines",
            file=sys.stderr,
            flush=True,
        )
        print("| reader | first read s | again s | RSS growth MiB | peak MiB | kept MiB |")
        print("|---|---:|---:|---:|---:|---:|")
        for how, label in (("old", "row by row (before)"), ("new", "columnar")):
            figures: dict[str, Any] = {}
            for traced in (False, True):
                command = [sys.executable, __file__, "--read-child", tmp, how]
                command += ["--traced"] if traced else []
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                figures.update(json.loads(out.stdout.strip().splitlines()[-1]))
            if figures["rows"] != rows:
                print(f"{label}: {figures['rows']} rows read, not {rows}", file=sys.stderr)
                return 1
            cells = [f"{figures['read_s']:.2f}", f"{figures['again_s']:.3f}"]
            cells += [f"{figures[k]:.1f}" for k in ("rss_mib", "peak_mib", "held_mib")]
            print(f"| {label} | {' | '.join(cells)} |", flush=True)
    return 0


def row(label: str, senders: str, result: dict[str, Any]) -> None:
    cpu = result["server_cpu_us"]
    print(
        f"| {label} | {senders} | {result['events']:,} | {result['events_per_s']:,.0f} | "
        f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['events_per_fsync']:.1f} | "
        f"{'-' if cpu != cpu else f'{cpu:.0f}'} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32, help="in flight, in all")
    parser.add_argument(
        "--clients", type=int, default=1, help="client processes (httpx costs ~1 ms CPU a request)"
    )
    parser.add_argument("--compare", action="store_true", help="also one fsync per event")
    parser.add_argument("--read", action="store_true", help="the cost of reading a window")
    parser.add_argument("--rows", type=int, default=150_000, help="--read: rows in the window")
    parser.add_argument("--batch", type=int, default=15_000, help="--read: rows per event")
    parser.add_argument("--read-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.max_batch)
        return 0
    if args.read_child:
        read_child(*args.read_child, traced=args.traced)
        return 0
    if args.read:
        return read_bench(args.rows, args.batch)

    load = os.getloadavg()[0]
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs (load {load:.1f}), "
        f"Python {platform.python_version()}; sink on {tempfile.gettempdir()}",
        file=sys.stderr,
    )
    print(
        "| sink | senders | events | events/s | p50 ms | p99 ms | events per fsync "
        "| server CPU µs/event |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    modes = [("group commit", None)] + ([("one per event", 1)] if args.compare else [])
    for label, max_batch in modes:
        result = run(args.pairs, args.concurrency, args.clients, max_batch)
        failed |= not result["ok"]
        row(label, f"{args.clients} x {args.concurrency // args.clients}", result)
        print(f"  read back: {result['read_reason']} in {result['read_s']:.2f}s", file=sys.stderr)
        if not result["ok"]:
            print("  read back failed: events are missing", file=sys.stderr)
    for label, max_batch in modes:  # the store alone, for scale
        result = store_only(args.pairs, args.concurrency, max_batch)
        row(f"store only, {label}", f"{args.concurrency} threads", result)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
