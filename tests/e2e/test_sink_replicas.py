"""The KServe sink with two replicas behind one address: an evaluating `mlwatchdog run` and a
sink-only `mlwatchdog sink`, sharing one sink folder (what a ReadWriteMany volume is to two
pods), behind haproxy's round robin (what a Service is). A sender posts KServe logger events and
keeps every acknowledgement; the sink-only process is SIGKILLed mid-stream; then the evaluating
daemon's window holds every acknowledged event, once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlwatchdog.rules import KServeSource, load_config
from mlwatchdog.sources.kserve import KServeReader
from tests.e2e.daemon_process import (
    COMMAND,
    DaemonProcess,
    environment,
    is_ready,
    value,
    wait_for,
    write_config,
)
from tests.integration.test_kserve_sink import COLUMNS, COMPONENT, ISVC, NAMESPACE, headers
from tests.integration.test_kserve_sink import write_config as sink_config
from tests.servers.haproxy import round_robin
from tests.servers.ports import free_port
from tests.servers.s3 import s3_server

OPERATOR = "operator-token-0123456789abcdef"
TARGET = "credit-model"  # reads namespace `models`: what the sender sends

pytestmark = pytest.mark.timeout(180)


def configs(tmp_path: Path, evaluator_port: int, sink_port: int) -> tuple[Path, Path]:
    """The evaluator's rules.yaml and the sink-only one's: one sink folder, each its own port
    and state folder (as two pods: a shared volume for the sink, their own for the rest)."""
    rules: dict[str, Any] = yaml.safe_load(sink_config(tmp_path, evaluator_port).read_text())
    daemon = rules["daemon"]
    daemon["auth"]["tokens"].append(
        {"name": "operator", "token": OPERATOR, "roles": ["read", "operate"]}
    )
    daemon["sink"]["pair_timeout"] = "2s"  # a half whose partner was lost in the kill counts soon
    evaluator = tmp_path / "rules.yaml"
    evaluator.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon["http"]["port"] = sink_port
    daemon["state_dir"] = str(tmp_path / "sink-state")
    sink = tmp_path / "rules-sink.yaml"
    sink.write_text(yaml.safe_dump(rules, sort_keys=False))
    return evaluator, sink


async def send(
    port: int, at: datetime, pairs: int, kill: int | None = None, kill_after: int = 0
) -> tuple[list[tuple[str, int]], Counter[str]]:
    """Posts `pairs` request/response events 16 at a time to `port`, SIGKILLs process `kill`
    (if any) after `kill_after` acknowledgements and goes on; returns the acknowledged (kind, i)
    and what the others got."""
    acked: list[tuple[str, int]] = []
    other: Counter[str] = Counter()
    gate = asyncio.Semaphore(16)

    async def post(client: httpx.AsyncClient, kind: str, i: int) -> None:
        body = {"instances": [[i, 1.0, "web"]]} if kind == "request" else {"predictions": [i]}
        async with gate:
            try:
                answer = await client.post(
                    "/sink/kserve",
                    content=json.dumps(body).encode(),
                    headers=headers(kind, f"r{i}", at + timedelta(milliseconds=i)),
                )
            except httpx.TransportError as exc:
                other[type(exc).__name__] += 1
                return
        if answer.status_code != 200:
            other[str(answer.status_code)] += 1
            return
        acked.append((kind, i))
        if kill is not None and len(acked) == kill_after:
            os.kill(kill, signal.SIGKILL)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        await asyncio.gather(
            *(post(client, kind, i) for i in range(pairs) for kind in ("request", "response"))
        )
    return acked, other


def test_every_acknowledged_event_reaches_the_evaluator_when_a_replica_is_killed(
    tmp_path: Path, processes: list[DaemonProcess]
) -> None:
    evaluator_port, sink_port = free_port(), free_port()
    evaluator_config, sink_config_path = configs(tmp_path, evaluator_port, sink_port)
    evaluator = DaemonProcess(
        evaluator_config, evaluator_port, tmp_path / "run.log", token=OPERATOR
    )
    sink = DaemonProcess(
        sink_config_path, sink_port, tmp_path / "sink.log", token=OPERATOR, command="sink"
    )
    processes += [evaluator, sink]
    wait_for(evaluator, "the evaluator ready", lambda: is_ready(evaluator), 60)
    wait_for(sink, "the sink-only process ready", lambda: is_ready(sink), 60)
    # Sink-only: no API about targets, never a leader; the evaluator is one.
    assert sink.http.get("/api/v1/targets").status_code == 404
    assert not value(sink.metrics(), "mlwatchdog_leader")
    assert value(evaluator.metrics(), "mlwatchdog_leader") == 1

    at = datetime.now(UTC) - timedelta(seconds=30)  # inside the 5 minute window, settled
    with round_robin([evaluator_port, sink_port], tmp_path) as port:
        acked, other = asyncio.run(send(port, at, pairs=400, kill=sink.proc.pid, kill_after=300))
    print(f"acknowledged {len(acked)} of 800; not: {dict(other)}")
    assert sink.proc.wait(10) == -signal.SIGKILL
    # Only what the killed process held failed: the evaluator took the rest (500 were sent after).
    assert len(acked) > 300 + 400, other

    # Both processes stored events: each its own file per partition, in the shared folder.
    files = [p.name for p in (tmp_path / "sink").rglob("*.jsonl")]
    for process in (evaluator, sink):
        assert any(f"-{process.proc.pid}-" in name for name in files), (process.proc.pid, files)

    # What an evaluation of the target reads: the `kserve` source over the shared folder.
    sink_settings = load_config(evaluator_config).daemon.sink
    spec = KServeSource(
        type="kserve", inference_service=ISVC, namespace=NAMESPACE, component=COMPONENT
    )
    read = KServeReader("inferences", spec, sink_settings).read(COLUMNS)
    assert read.frame is not None, read.reason
    ages = [int(a) for a in read.frame["age"].dropna()]
    scores = [int(s) for s in read.frame["score"].dropna()]
    assert len(ages) == len(set(ages)) and len(scores) == len(set(scores)), "stored twice"
    stored = {("request", i) for i in ages} | {("response", i) for i in scores}
    lost = sorted(set(acked) - stored)
    assert not lost, f"{len(lost)} acknowledged events are not in the window: {lost[:5]}"

    # And the evaluator's own evaluation counts exactly those requests.
    answer = evaluator.http.post(f"/api/v1/targets/{TARGET}/evaluate")
    assert answer.status_code == 200, answer.text
    columns = answer.json()["target"]["columns"]
    (age,) = [c for c in columns if c["column"] == "age"]
    assert age["n_current"] == len(ages)


def test_sink_only_needs_a_kserve_source(tmp_path: Path) -> None:
    """The bundled rules read files, not the sink: `mlwatchdog sink` says so and stops."""
    config = write_config(tmp_path, free_port())
    done = subprocess.run(
        [COMMAND, "sink", "--config", str(config)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no source of this config has `type: kserve`" in done.stderr


def test_a_sink_only_process_stores_on_s3_and_never_shows_the_key(
    tmp_path: Path, processes: list[DaemonProcess]
) -> None:
    """`mlwatchdog sink` on an object store (moto's S3 server): the credentials come from the
    environment through ${ENV} in daemon.sink.storage_options; each acknowledged event is an
    object the `kserve` source reads; the secret is in no log line."""
    secret = "s3-secret-0123456789abcdef"
    port = free_port()
    with s3_server(tmp_path / "moto.log", "sink-bucket") as options:
        rules: dict[str, Any] = yaml.safe_load(sink_config(tmp_path, port).read_text())
        rules["daemon"]["sink"].update(
            path="s3://sink-bucket/sink",
            storage_options={
                "key": "${SINK_KEY}",
                "secret": "${SINK_SECRET}",
                "client_kwargs": options["client_kwargs"],
            },
        )
        rules["daemon"]["log_level"] = "debug"  # everything it says, to look for the secret
        config = tmp_path / "rules-s3.yaml"
        config.write_text(yaml.safe_dump(rules, sort_keys=False))
        env = environment(SINK_KEY="testing-key", SINK_SECRET=secret)
        sink = DaemonProcess(config, port, tmp_path / "sink.log", env=env, command="sink")
        processes.append(sink)
        wait_for(sink, "the sink-only process ready", lambda: is_ready(sink), 60)

        at = datetime.now(UTC) - timedelta(seconds=30)
        acked, other = asyncio.run(send(port, at, pairs=20))
        assert len(acked) == 40, other

        settings = load_config(config, env).daemon.sink
        spec = KServeSource(
            type="kserve", inference_service=ISVC, namespace=NAMESPACE, component=COMPONENT
        )
        read = KServeReader("inferences", spec, settings).read(COLUMNS)
        assert read.frame is not None, read.reason
        assert sorted(int(a) for a in read.frame["age"]) == list(range(20))
        assert all(f.startswith("sink-bucket/sink/dt=") for f in read.files)
        code, _ = sink.stop()
        assert code == 0
    assert secret not in sink.text()
