"""One sink store, several writers (issue 16): what sharing a store costs, side by side in one run.

- Writers: N events stored by one writer process, then by two writer processes at once on one
  folder (what two sink pods on a ReadWriteMany volume do; here a local disk), then by one writer
  on an S3 bucket (moto's server on loopback: one immutable object per commit). Each process
  runs `--concurrency` threads, each waiting for its event to be durable, as the sink route does.
  Reported: events/s (wall), the writers' CPU per event, events per commit (fsync or PUT).
- Readers: a fresh `KServeReader` reads the window (the first evaluation after a restart), then
  100 more events are stored and it reads again (every later evaluation): CPU and wall time of
  each read, over the folder both writers filled and over the bucket.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/sink_replicas_bench.py [--events N]

moto is a Python server: its PUT and LIST latencies are not S3's (which are slower, 10-50 ms);
the object-store figures show the shape of the cost (requests per commit and per read), not S3.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from mlwatchdog.rules import KServeSource, Sink
from mlwatchdog.sources.kserve import Event, KServeReader, SinkStore
from mlwatchdog.sources.kserve.lines import stamp

AT = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
SPEC = KServeSource(type="kserve", inference_service="bench")
META = {"inference_service": "bench", "namespace": "models", "component": "predictor"}


def event(i: int) -> Event:
    at = stamp(AT + timedelta(milliseconds=50 * i))
    return Event(at, "request", f"e{i}", **META, endpoint="", rows=[[float(i), i / 7, i % 13]])


def write(sink: Sink, first: int, count: int, concurrency: int) -> dict[str, float]:
    """In a writer process: store events [first, first + count) from `concurrency` threads."""
    store = SinkStore(sink)
    todo = iter(range(first, first + count))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            store.write([event(i)]).result()

    cpu, started = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": seconds, "cpu": time.process_time() - cpu, "commits": store.commits}


def writers(sink: Sink, processes: int, events: int, concurrency: int) -> dict[str, float]:
    share = events // processes
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        started = time.perf_counter()
        done = pool.starmap(
            write, [(sink, p * share, share, concurrency) for p in range(processes)]
        )
        seconds = time.perf_counter() - started
    stored = share * processes
    return {
        "events_per_s": stored / seconds,
        "cpu_us_per_event": 1e6 * sum(d["cpu"] for d in done) / stored,
        "events_per_commit": stored / sum(d["commits"] for d in done),
    }


def reads(sink: Sink, server: psutil.Process | None) -> dict[str, float]:
    """A fresh reader's first read, then its read after 100 more events."""
    reader = KServeReader("bench", SPEC, sink, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    result: dict[str, float] = {}
    for name in ("first", "next"):
        if name == "next":
            write(sink, 10**6, 100, 4)
        server_cpu = sum(server.cpu_times()[:2]) if server else 0.0
        cpu, started = time.process_time(), time.perf_counter()
        got = reader.read(["a", "b", "c"], AT - timedelta(minutes=1), datetime.now(UTC))
        result[f"{name}_ms"] = 1000 * (time.perf_counter() - started)
        result[f"{name}_cpu_ms"] = 1000 * (time.process_time() - cpu)
        if server:
            result[f"{name}_server_cpu_ms"] = 1000 * (sum(server.cpu_times()[:2]) - server_cpu)
        assert got.frame is not None, got.reason
        result[f"{name}_rows"] = len(got.frame)
        result[f"{name}_files"] = len(got.files)
    return result


def moto(folder: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    command = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if command is None:
        raise SystemExit("moto_server not found: pip install -e '.[dev]'")
    with socket_port() as port:
        pass
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=(folder / "moto.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    httpx.put(f"{url}/bench").raise_for_status()
    options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": url}}
    return server, options


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=32, help="threads per writer")
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load {os.getloadavg()[0]:.2f} at start")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="sink-replicas-bench-") as tmp:
        folder = Path(tmp)
        one = Sink(path=str(folder / "one"))
        shared = Sink(path=str(folder / "shared"))
        rows.append(("folder, 1 writer process", writers(one, 1, args.events, args.concurrency)))
        rows.append(
            ("folder, 2 writer processes", writers(shared, 2, args.events, args.concurrency))
        )
        server, options = moto(folder)
        try:
            bucket = Sink(path="s3://bench/sink", storage_options=options)
            rows.append(
                ("S3 (moto), 1 writer process", writers(bucket, 1, args.events, args.concurrency))
            )
            print("\n| writers | events/s | writer CPU µs/event | events per commit |")
            print("|---|---:|---:|---:|")
            for name, r in rows:
                print(f"| {name} | {r['events_per_s']:.0f} | {r['cpu_us_per_event']:.0f} | "
                      f"{r['events_per_commit']:.1f} |")  # fmt: skip
            print(
                "\n| read of the window | files | rows | first: wall / CPU ms | "
                "next (+100 events): wall / CPU ms | moto's CPU ms, first / next |"
            )
            print("|---|---:|---:|---:|---:|---:|")
            for name, sink, proc in (
                ("folder, 2 writers", shared, None),
                ("S3 (moto) segments", bucket, psutil.Process(server.pid)),
            ):
                r = reads(sink, proc)
                moto_cpu = (f"{r['first_server_cpu_ms']:.0f} / {r['next_server_cpu_ms']:.0f}"
                            if proc else "-")  # fmt: skip
                print(f"| {name} | {r['first_files']:.0f} | {r['first_rows']:.0f} | "
                      f"{r['first_ms']:.0f} / {r['first_cpu_ms']:.0f} | "
                      f"{r['next_ms']:.0f} / {r['next_cpu_ms']:.0f} | {moto_cpu} |")  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
    print(f"\nload {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
