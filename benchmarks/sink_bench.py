"""KServe sink benchmark: logger events per second into the daemon over loopback, durably stored,
sent by wrk (a compiled load generator, so the client is not the bottleneck); and (`--read`) what
reading a window of stored events costs.

    .venv/bin/python benchmarks/sink_bench.py [--connections 1,32,256] [--seconds 10]
                                              [--before <git revision>] [--store]
    .venv/bin/python benchmarks/sink_bench.py --read [--rows 150000] [--batch 15000]

Needs `wrk` (Debian: apt-get install wrk; `make bench-sink` installs it). For each number of
connections, side by side: uvicorn alone (a trivial ASGI app that reads the body and answers, the
floor any route on this server pays), the daemon's app from `--before` (its mlwatchdog package
extracted with git archive), and the daemon's app from this tree. Each runs in a fresh server
process, served as `mlwatchdog run` serves it (uvicorn, httptools, uvloop, daemon.http's limits),
with a sink path secret as deployed; wrk (`sink_wrk.lua`) sends binary-mode CloudEvents shaped
like KServe's payload logger (a v1 body of 20 features, then the response's prediction under the
same ce-id), for 2 s to warm up, then `--seconds` measured. A 200 means the event is fsynced
(group commit). Reported: events/s, wrk's latency percentiles, events per fsync, and the server's
CPU per event (utime + stime from /proc, less sensitive than events/s to other load). Afterwards
KServeReader counts the stored events: every 200 must be there (exit status 1 if not, or if any
request failed). `--store` adds what `SinkStore` alone sustains (threads appending parsed
events, each awaiting its fsync), for scale.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from mlwatchdog.rules import KServeSource, Sink, parse_config
from mlwatchdog.sources.kserve import Event, KServeReader, SinkStore, decode
from mlwatchdog.sources.kserve.lines import stamp

FEATURES = [f"f{i}" for i in range(20)]
WRK_SCRIPT = Path(__file__).with_name("sink_wrk.lua")


def config_text(directory: Path) -> str:
    features = ", ".join(f"{name}: numeric" for name in FEATURES)
    return f"""
version: 1
daemon:
  state_dir: {directory / "state"}
  log_level: warning
  sink: {{path: {directory / "sink"}, pair_timeout: 1m}}
  auth:
    sink_paths: [{{inference_service: bench, namespace: models, secret: {SECRET}}}]
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

SECRET = "bench-" + "s3cr3t" * 6  # the InferenceService's sink path secret (as deployed)
FLOOR_ANSWER = b'{"stored_rows":1}'


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """uvicorn alone: reads the body and answers as the sink does, storing nothing (the floor)."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    length = str(len(FLOOR_ANSWER)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": FLOOR_ANSWER})


def serve(config_path: str, port: int, floor: bool) -> None:
    """The daemon's app on `port` until SIGTERM, served as `mlwatchdog run` serves it (uvicorn
    within daemon.http's limits); then prints the store's fsync count. `floor`: floor_app."""
    import uvicorn

    from mlwatchdog.daemon.app import create_app
    from mlwatchdog.daemon.http_server import uvicorn_options
    from mlwatchdog.daemon.logs import configure_logging
    from mlwatchdog.daemon.service import Daemon

    config = parse_config(Path(config_path).read_text())
    log = configure_logging("warning")
    daemon = None if floor else Daemon(config, log)
    server = uvicorn.Server(
        uvicorn.Config(
            floor_app if daemon is None else create_app(daemon),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off" if daemon is None else "on",
            **uvicorn_options(config.daemon.http, log),
        )
    )
    # uvicorn re-raises the SIGTERM it stopped on: under this handler that does not kill us.
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()
    commits = daemon.sink.commits if daemon is not None and daemon.sink is not None else 0
    print(json.dumps({"commits": commits}), flush=True)


# --------------------------------------------------------------------------------- the client


def wrk(url: str, connections: int, seconds: float, run: str) -> dict[str, Any]:
    """One wrk run (one thread: the C client costs a few µs a request), its ce-ids starting with
    `run`; its figures."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"]
    command += ["-s", str(WRK_SCRIPT), url, "--", run]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def cpu_seconds(pid: int) -> np.ndarray:
    """utime and stime of process `pid` (all its threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return np.array([int(fields[11]), int(fields[12])]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(tree: Path | None, connections: int, seconds: float) -> dict[str, Any]:
    """One measured wrk run (after a warm-up) against a fresh server from `tree` (its
    mlwatchdog package; None: floor_app) and a fresh sink; then the stored events counted."""
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        directory = Path(tmp)
        config_path = directory / "rules.yaml"
        config_path.write_text(config_text(directory))
        port = free_port()
        command = [sys.executable, __file__, "--serve", str(config_path), "--port", str(port)]
        command += ["--floor"] if tree is None else []
        env = {**os.environ, "PYTHONPATH": str(tree or Path(__file__).resolve().parents[1])}
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        url = f"http://127.0.0.1:{port}/sink/kserve/{SECRET}"
        try:
            wait_healthy(f"http://127.0.0.1:{port}", server)
            warm = wrk(url, connections, 2, "warm")
            cpu_before = cpu_seconds(server.pid)
            measured = wrk(url, connections, seconds, "measured")
            cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            server.send_signal(signal.SIGTERM)
            out, _ = server.communicate(timeout=60)
        commits = json.loads(out.strip().splitlines()[-1])["commits"]
        stored = stored_events(directory / "sink") if tree is not None else None
    events = measured["requests"]
    acknowledged = sum(r["requests"] - r["status_errors"] for r in (warm, measured))
    # Every 200 must be stored; at most the requests in flight when wrk stopped are stored
    # without their 200 reaching wrk.
    ok = stored is None or acknowledged <= stored <= acknowledged + 2 * connections
    failed = measured["status_errors"] + measured["socket_errors"]
    return {
        "connections": connections,
        "events": events,
        "events_per_s": events / (measured["duration_us"] / 1e6),
        "p50_ms": measured["p50_us"] / 1000,
        "p99_ms": measured["p99_us"] / 1000,
        "events_per_fsync": acknowledged / commits if commits else float("nan"),
        "server_cpu_us": 1e6 * cpu.sum() / events,
        "server_sys_us": 1e6 * cpu[1] / events,
        "failed": failed,
        "acknowledged": acknowledged,
        "stored": stored,
        "ok": ok and failed == 0,
    }


def stored_events(sink: Path) -> int:
    """Events the reader finds in the sink, every half settled (an hour on): two per paired
    row, one per half alone (a request without its response has no score, and the reverse)."""
    reader = KServeReader(
        "inferences",
        KServeSource(type="kserve", inference_service="bench"),
        Sink(path=str(sink)),
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )
    frame = reader.read([*FEATURES, "score"]).frame
    if frame is None:
        return 0
    return int(frame[FEATURES[0]].notna().sum() + frame["score"].notna().sum())


def before_tree(revision: str, directory: Path) -> Path:
    """The mlwatchdog package of git `revision` extracted into `directory` (no worktree)."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "mlwatchdog"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def store_only(pairs: int, writers: int) -> dict[str, Any]:
    """The store without HTTP: `writers` threads appending parsed events, each awaiting its
    fsync; shows what group commit alone sustains."""
    from mlwatchdog.sources import kserve

    now = datetime.now(UTC)
    todo = iter(
        [
            [Event(stamp(now), kind, f"e{i}", "bench", "models", "predictor", "", rows)]
            for i in range(pairs)
            for kind, rows in (("request", [list(range(20))]), ("response", [[float(i)]]))
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
            raise RuntimeError("the server did not start")


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


def http_bench(connections: list[int], seconds: float, before: str | None, store: bool) -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (or make bench-sink)", file=sys.stderr)
        return 2
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, load {load()} at the start, "
        f"Python {platform.python_version()}; sink on {tempfile.gettempdir()}; "
        f"wrk -t1, {seconds:g} s measured after 2 s of warm-up",
        file=sys.stderr,
    )
    print(
        "| server | connections | events | events/s | p50 ms | p99 ms | events per fsync "
        "| server CPU µs/event | of which system | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    failed = False
    with tempfile.TemporaryDirectory(prefix="sink-bench-before-") as tmp:
        trees: list[tuple[str, Path | None]] = [("uvicorn alone (floor)", None)]
        if before is not None:
            trees.append((f"sink at {before}", before_tree(before, Path(tmp))))
        trees.append(("sink (this tree)", Path(__file__).resolve().parents[1]))
        for n in connections:  # interleaved: each comparison under the same load
            for label, tree in trees:
                result = run(tree, n, seconds)
                row(label, result)
                if not result["ok"]:
                    failed = True
                    print(
                        f"  FAILED: {result['failed']} requests failed; "
                        f"{result['acknowledged']} acknowledged, {result['stored']} stored",
                        file=sys.stderr,
                    )
    if store:
        result = store_only(10_000, 32)
        print(
            f"store only (32 threads, {result['events']:,} events): "
            f"{result['events_per_s']:,.0f} events/s, p99 {result['p99_ms']:.1f} ms, "
            f"{result['events_per_fsync']:.1f} events per fsync",
            file=sys.stderr,
        )
    return 1 if failed else 0


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def row(label: str, result: dict[str, Any]) -> None:
    fsync = result["events_per_fsync"]
    print(
        f"| {label} | {result['connections']} | {result['events']:,} | "
        f"{result['events_per_s']:,.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | "
        f"{'-' if fsync != fsync else f'{fsync:.1f}'} | {result['server_cpu_us']:.0f} | "
        f"{result['server_sys_us']:.0f} | "
        f"{load()} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="1,32,256", help="wrk connections, a list")
    parser.add_argument("--seconds", type=float, default=10, help="measured per run")
    parser.add_argument("--before", help="also the sink of this git revision, side by side")
    parser.add_argument("--store", action="store_true", help="also SinkStore alone")
    parser.add_argument("--read", action="store_true", help="the cost of reading a window")
    parser.add_argument("--rows", type=int, default=150_000, help="--read: rows in the window")
    parser.add_argument("--batch", type=int, default=15_000, help="--read: rows per event")
    parser.add_argument("--read-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.floor)
        return 0
    if args.read_child:
        read_child(*args.read_child, traced=args.traced)
        return 0
    if args.read:
        return read_bench(args.rows, args.batch)
    connections = [int(n) for n in args.connections.split(",")]
    return http_bench(connections, args.seconds, args.before, args.store)


if __name__ == "__main__":
    sys.exit(main())
