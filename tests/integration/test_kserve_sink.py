"""The KServe sink end to end: real HTTP into the daemon's app, read back by KServeReader.

The events are shaped exactly as KServe's payload logger sends them (pkg/logger/worker.go):
binary-mode CloudEvents with ce-id shared by a request and its response, ce-type
org.kubeflow.serving.inference.request/response, the inferenceservicename, namespace, component
and endpoint extensions, and the body the model got (v1 `instances`, v2 `inputs`) or gave.
Most tests share one daemon served by uvicorn in a thread (its app built as the daemon builds
it, so credentials and body limits are checked by its middleware), each on its own
InferenceService name; the kill -9 test runs `mlwatchdog run` as a process and SIGKILLs it
mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlwatchdog.core import DataStatus
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.logs import configure_logging
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.rules import Config, KServeSource, load_config
from mlwatchdog.sources.kserve import PARTITIONING, KServeReader
from tests.servers.ports import free_port

COMMAND = shutil.which("mlwatchdog") or str(Path(sys.executable).parent / "mlwatchdog")
ISVC, NAMESPACE, COMPONENT = "credit", "models", "predictor"
TENSORS = "vision"  # the namespace of a target whose model takes and gives 2-D tensors
TOKEN = "sink-token-0123456789abcdef"  # daemon.auth.tokens, role sink
PATH_ISVC, PATH_SECRET = "credit-by-path", "path-secret-0123456789abcdef"  # daemon.auth.sink_paths
LIMIT = 524_288  # max_event_bytes
PAIR_TIMEOUT = timedelta(minutes=1)
COLUMNS = ["age", "income", "channel", "score"]  # features, then predictions: what targets ask
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------ helpers


def write_config(tmp_path: Path, port: int) -> Path:
    """A config whose targets' samples come from `type: kserve` sources: `credit-model` reads
    every InferenceService of namespace `models`, `vision-model` those of namespace `vision`."""
    rng = np.random.default_rng(7)
    reference, tensors = tmp_path / "reference.csv", tmp_path / "tensors.csv"
    pd.DataFrame(
        {
            "age": rng.normal(40, 10, 200),
            "income": rng.normal(50, 5, 200),
            "channel": rng.choice(["web", "app"], 200),
            "score": rng.uniform(0, 1, 200),
        }
    ).to_csv(reference, index=False)
    pd.DataFrame(rng.uniform(0, 1, (200, 5)), columns=["x", "y", "z", "p_no", "p_yes"]).to_csv(
        tensors, index=False
    )
    target = {
        "interval": "1h",
        "checks": [{"name": "features", "type": "drift", "test": "ks", "columns": "features"}],
    }
    rules: dict[str, Any] = {
        "version": 1,
        "daemon": {
            "http": {"host": "127.0.0.1", "port": port},
            "state_dir": str(tmp_path / "state"),
            "log_level": "warning",
            "jitter": "0s",
            "auth": {
                "tokens": [{"name": "kserve-logger", "token": TOKEN, "roles": ["sink"]}],
                "sink_paths": [
                    {"inference_service": PATH_ISVC, "namespace": NAMESPACE, "secret": PATH_SECRET}
                ],
            },
            "sink": {
                "path": str(tmp_path / "sink"),
                "max_event_bytes": LIMIT,
                "retention": "1d",
                "pair_timeout": "1m",
                "max_clock_skew": "5m",
                "max_event_age": "3h",
            },
        },
        "sources": {
            "inferences": {"type": "kserve", "namespace": NAMESPACE, "component": COMPONENT},
            "tensors": {"type": "kserve", "namespace": TENSORS, "component": COMPONENT},
            "training": {"type": "files", "url": str(reference), "timestamp_column": None},
            "tensor_training": {"type": "files", "url": str(tensors), "timestamp_column": None},
        },
        "targets": [
            {
                "name": "credit-model",
                "samples": {"source": "inferences", "window": "5m", "min_samples": 10},
                "reference": {"source": "training"},
                "columns": {
                    "features": {"age": "numeric", "income": "numeric", "channel": "categorical"},
                    "predictions": {"score": "numeric"},
                },
                **target,
            },
            {
                "name": "vision-model",
                "samples": {"source": "tensors", "window": "5m", "min_samples": 10},
                "reference": {"source": "tensor_training"},
                "columns": {
                    "features": {"x": "numeric", "y": "numeric", "z": "numeric"},
                    "predictions": {"p_no": "numeric", "p_yes": "numeric"},
                },
                **target,
            },
        ],
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def ce_time(moment: datetime) -> str:
    """RFC 3339 with nanoseconds, as Go's cloudevents SDK writes ce-time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def headers(
    kind: str,
    ce_id: str,
    at: datetime | None,
    isvc: str = ISVC,
    token: str | None = TOKEN,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """A logger event's headers (without ce-time when `at` is None)."""
    sent = {
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-type": REQUEST if kind == "request" else RESPONSE,
        "ce-source": "http://localhost:9081/",
        "ce-inferenceservicename": isvc,
        "ce-namespace": namespace,
        "ce-component": COMPONENT,
        "ce-endpoint": "default",
        "ce-metadata": "{}",
        "content-type": "application/json",
    }
    if at is not None:
        sent["ce-time"] = ce_time(at)
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    return sent


@dataclass
class Served:
    client: httpx.Client  # one connection: a new client per request costs ~30 ms of TLS setup
    daemon: Daemon
    config: Config

    def post(
        self,
        kind: str,
        ce_id: str,
        body: Any,
        at: datetime | None,
        isvc: str,
        expect: int = 200,
        path: str = "/sink/kserve",
        **kwargs: Any,
    ) -> httpx.Response:
        """POSTs one logger event and checks the status it got."""
        answer = self.client.post(
            path,
            content=body if isinstance(body, bytes) else json.dumps(body).encode(),
            headers=headers(kind, ce_id, at, isvc, **kwargs),
        )
        assert answer.status_code == expect, answer.text
        return answer

    def reader(
        self, isvc: str, now: datetime | None = None, namespace: str = NAMESPACE, **spec: Any
    ) -> KServeReader:
        source = KServeSource(
            type="kserve",
            inference_service=isvc,
            namespace=namespace,
            component=COMPONENT,
            **spec,
        )
        sink = self.config.daemon.sink
        return KServeReader("inferences", source, sink, clock=lambda: now or utc_now())

    def counted(self, result: str, reason: str) -> float:
        """mlwatchdog_sink_events_total{result, reason} as /metrics shows it."""
        for family in text_string_to_metric_families(self.client.get("/metrics").text):
            for sample in family.samples:
                if sample.name == "mlwatchdog_sink_events_total" and sample.labels == {
                    "result": result,
                    "reason": reason,
                }:
                    return float(sample.value)
        return 0.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def unique(prefix: str = "isvc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def window(at: datetime) -> tuple[datetime, datetime]:
    return at - timedelta(minutes=1), at + timedelta(minutes=1)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, NaN as None, for exact comparisons."""
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The daemon's real app under uvicorn on a free loopback port, in a thread."""
    tmp = tmp_path_factory.mktemp("sink")
    config = load_config(write_config(tmp, 0))
    daemon = Daemon(config, configure_logging("warning"))
    server = uvicorn.Server(
        uvicorn.Config(create_app(daemon), log_config=None, access_log=False, lifespan="on")
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as client:
        yield Served(client, daemon, config)
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


# ------------------------------------------------------------------------------ payload shapes


def test_v1_list_instances_pair_with_their_predictions(served: Served) -> None:
    isvc, at = unique(), utc_now()
    instances = [[31, 52.5, "web"], [45, 61.0, "app"], [27, 48.25, "web"]]
    served.post("request", "a1", {"instances": instances}, at, isvc)
    later = at + timedelta(milliseconds=40)
    done = served.post("response", "a1", {"predictions": [0.1, 0.2, 0.3]}, later, isvc)
    assert done.json() == {"stored_rows": 3}

    read = served.reader(isvc).read(COLUMNS, *window(at))
    assert read.status is DataStatus.OK, read.reason
    assert "3 paired" in read.reason
    assert list(read.frame.columns) == [*COLUMNS, "timestamp"]
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 31.0, "income": 52.5, "channel": "web", "score": 0.1},
        {"age": 45.0, "income": 61.0, "channel": "app", "score": 0.2},
        {"age": 27.0, "income": 48.25, "channel": "web", "score": 0.3},
    ]
    assert [str(t) for t in read.frame.dtypes[["age", "income", "score"]]] == ["float64"] * 3
    # The request's time, to the microsecond (Go's nanoseconds are cut).
    assert (read.frame["timestamp"] == pd.Timestamp(at).floor("us")).all()


def test_v1_dict_instances_pair_when_the_response_comes_first(served: Served) -> None:
    isvc, at = unique(), utc_now()
    predictions = {"predictions": [{"score": 0.7, "label": 1}, {"score": 0.2, "label": 0}]}
    later = at + timedelta(milliseconds=15)
    served.post("response", "b1", predictions, later, isvc)
    instances = [
        {"income": 70.0, "age": 50, "channel": "app", "zip": "10115"},
        {"age": 22, "income": 30.5, "channel": "web", "zip": "80331"},
    ]
    served.post("request", "b1", {"instances": instances}, at, isvc)

    read = served.reader(isvc).read(COLUMNS, *window(at))
    assert read.status is DataStatus.OK, read.reason
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 50.0, "income": 70.0, "channel": "app", "score": 0.7},
        {"age": 22.0, "income": 30.5, "channel": "web", "score": 0.2},
    ]
    assert (read.frame["timestamp"] == pd.Timestamp(at).floor("us")).all()


def test_v2_one_tensor_per_feature_and_an_unnamed_output(served: Served) -> None:
    isvc, at = unique(), utc_now()
    inputs = {
        "id": "42",
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [33, 58]},
            {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [[41.5], [77.0]]},
            {"name": "channel", "shape": [2], "datatype": "BYTES", "data": ["web", "app"]},
        ],
    }
    # KServe's sklearn server names its output "output-0": it is the one prediction, by position.
    outputs = {
        "model_name": "credit",
        "outputs": [{"name": "output-0", "shape": [2], "datatype": "FP32", "data": [0.25, 0.75]}],
    }
    served.post("request", "c1", inputs, at, isvc)
    served.post("response", "c1", outputs, at, isvc)

    read = served.reader(isvc).read(COLUMNS, *window(at))
    assert read.status is DataStatus.OK, read.reason
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 33.0, "income": 41.5, "channel": "web", "score": 0.25},
        {"age": 58.0, "income": 77.0, "channel": "app", "score": 0.75},
    ]


def test_v2_one_2d_tensor_is_positional(served: Served) -> None:
    isvc, at = unique(), utc_now()
    tensor = {"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
    nested = [[0.9, 0.1], [0.4, 0.6]]  # the protocol allows nested data too
    probabilities = {
        "outputs": [{"name": "probs", "shape": [2, 2], "datatype": "FP32", "data": nested}]
    }
    served.post("request", "d1", {"inputs": [tensor]}, at, isvc, namespace=TENSORS)
    served.post("response", "d1", probabilities, at, isvc, namespace=TENSORS)
    span = window(at)

    # By default the inputs fill the declared features in order, the outputs the predictions.
    read = served.reader(isvc, namespace=TENSORS).read(["x", "y", "z", "p_no", "p_yes"], *span)
    assert read.status is DataStatus.OK, read.reason
    assert records(read.frame.drop(columns="timestamp")) == [
        {"x": 1.0, "y": 2.0, "z": 3.0, "p_no": 0.9, "p_yes": 0.1},
        {"x": 4.0, "y": 5.0, "z": 6.0, "p_no": 0.4, "p_yes": 0.6},
    ]
    # input_names / output_names name the positions, so a target may test only some of them.
    named = served.reader(
        isvc, namespace=TENSORS, input_names=["x", "y", "z"], output_names=["p_no", "p_yes"]
    )
    read = named.read(["z", "p_yes"], *span)
    assert records(read.frame.drop(columns="timestamp")) == [
        {"z": 3.0, "p_yes": 0.1},
        {"z": 6.0, "p_yes": 0.6},
    ]
    # Without names, 3 positional inputs cannot fill 1 feature: set aside, saying what to set.
    read = served.reader(isvc, namespace=TENSORS).read(["z", "p_no", "p_yes"], *span)
    assert [(a.reason, a.count) for a in read.set_aside] == [("column_count", 2)]
    assert "input_names" in read.reason


# ------------------------------------------------------------------------------------- pairing


def test_unpaired_halves_wait_then_are_used_alone(served: Served) -> None:
    isvc, at = unique(), utc_now()
    request = {"instances": [[40, 55.0, "web"]]}
    served.post("request", "lonely-request", request, at, isvc)
    response = {"predictions": [0.8]}
    served.post("response", "lonely-response", response, at, isvc)
    served.post("request", "pair", {"instances": [[50, 60.0, "app"]]}, at, isvc)
    served.post("response", "pair", {"predictions": [0.3]}, at, isvc)
    span = window(at)

    # Younger than pair_timeout: the partner may still come, so the halves wait.
    young = served.reader(isvc, now=at + PAIR_TIMEOUT / 2).read(COLUMNS, *span)
    assert young.status is DataStatus.OK
    assert "1 paired, 0 alone, 2 waiting" in young.reason
    assert records(young.frame.drop(columns="timestamp")) == [
        {"age": 50.0, "income": 60.0, "channel": "app", "score": 0.3}
    ]

    # Older: used alone; a request alone has no prediction (NaN), a response alone no features.
    old = served.reader(isvc, now=at + PAIR_TIMEOUT * 2).read(COLUMNS, *span)
    assert "1 paired, 2 alone" in old.reason
    rows = sorted(records(old.frame.drop(columns="timestamp")), key=str)
    assert rows == sorted(
        [
            {"age": 40.0, "income": 55.0, "channel": "web", "score": None},
            {"age": None, "income": None, "channel": None, "score": 0.8},
            {"age": 50.0, "income": 60.0, "channel": "app", "score": 0.3},
        ],
        key=str,
    )
    assert old.frame["score"].dtype == np.float64

    # A late partner still pairs.
    later = at + timedelta(seconds=20)
    served.post("response", "lonely-request", response, later, isvc)
    late = served.reader(isvc, now=at + PAIR_TIMEOUT / 2).read(COLUMNS, *span)
    assert "2 paired, 0 alone, 1 waiting" in late.reason


def test_a_window_takes_the_row_of_its_request(served: Served) -> None:
    """A pair is counted once: in the window of its request, even if its response is later."""
    isvc, at = unique(), utc_now()
    served.post("request", "edge", {"instances": [[1, 2.0, "web"]]}, at, isvc)
    served.post("response", "edge", {"predictions": [0.5]}, at + timedelta(seconds=2), isvc)
    reader = served.reader(isvc)
    this = reader.read(COLUMNS, at - timedelta(seconds=10), at + timedelta(seconds=1))
    assert len(this.frame) == 1 and this.frame["score"].iloc[0] == 0.5
    nxt = reader.read(COLUMNS, at + timedelta(seconds=1), at + timedelta(seconds=10))
    assert nxt.status is DataStatus.NO_DATA


def test_a_pair_across_an_hour_boundary_and_a_repeated_event(served: Served) -> None:
    isvc = unique()
    at = (utc_now() - timedelta(hours=1)).replace(minute=59, second=59, microsecond=900_000)
    served.post("request", "h1", {"instances": [[7, 8.0, "web"]]}, at, isvc)
    served.post("request", "h1", {"instances": [[7, 8.0, "web"]]}, at, isvc)  # sent twice
    later = at + timedelta(milliseconds=300)  # the next hour's partition
    served.post("response", "h1", {"predictions": [0.9]}, later, isvc)
    read = served.reader(isvc).read(COLUMNS, at - timedelta(minutes=5), at + timedelta(seconds=1))
    assert len(read.files) == 2
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 7.0, "income": 8.0, "channel": "web", "score": 0.9}
    ]


def test_structured_mode(served: Served) -> None:
    isvc, at = unique(), utc_now()
    event = {
        "specversion": "1.0",
        "id": "s1",
        "type": REQUEST,
        "source": "http://localhost:9081/",
        "time": ce_time(at),
        "inferenceservicename": isvc,
        "namespace": NAMESPACE,
        "component": COMPONENT,
        "endpoint": "canary",
        "datacontenttype": "application/json",
        "data": {"instances": [[36, 44.0, "app"]]},
    }
    sent = served.client.post(
        "/sink/kserve",
        content=json.dumps(event).encode(),
        headers={
            "content-type": "application/cloudevents+json",
            "authorization": f"Bearer {TOKEN}",
        },
    )
    assert sent.status_code == 200, sent.text
    served.post("response", "s1", {"predictions": [0.6]}, at, isvc)
    read = served.reader(isvc).read(COLUMNS, *window(at), filters={"endpoint": "canary"})
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 36.0, "income": 44.0, "channel": "app", "score": 0.6, "endpoint": "canary"}
    ]


def test_the_daemon_evaluates_a_target_on_kserve_samples(served: Served) -> None:
    now = utc_now()
    rng = np.random.default_rng(3)
    for i in range(20):
        at = now - timedelta(seconds=30 - i)
        row = [float(rng.normal(40, 10)), float(rng.normal(50, 5)), "web"]
        served.post("request", f"t{i}", {"instances": [row]}, at, ISVC)
        served.post("response", f"t{i}", {"predictions": [0.5]}, at, ISVC)
    target = served.config.targets[0]
    seen = served.daemon.observer.observe(target, utc_now())
    assert seen.samples_status is DataStatus.OK, seen.samples_reason
    assert seen.samples is not None and len(seen.samples) >= 20


# ----------------------------------------------------------------------------- credentials


def test_credentials_are_checked_before_the_sink(served: Served) -> None:
    isvc, at = unique(), utc_now()
    body = {"instances": [[1, 2.0, "web"]]}
    missing = served.post("request", "x", body, at, isvc, expect=401, token=None)
    assert missing.headers["www-authenticate"].startswith("Bearer ")
    served.post("request", "x", body, at, isvc, expect=401, token="not-the-token-0123456789")
    wrong_path = "/sink/kserve/not-the-secret-0123456789"
    served.post("request", "x", body, at, isvc, expect=401, token=None, path=wrong_path)
    assert served.reader(isvc).read(COLUMNS, *window(at)).status is DataStatus.NO_DATA


def test_a_path_secret_takes_its_own_inference_services_events_only(served: Served) -> None:
    """KServe's logger cannot send headers: its URL holds a secret for one InferenceService."""
    at, path = utc_now(), f"/sink/kserve/{PATH_SECRET}"
    ce_id = unique("p")
    served.post(
        "request", ce_id, {"instances": [[33, 40.0, "app"]]}, at, PATH_ISVC, path=path, token=None
    )
    served.post("response", ce_id, {"predictions": [0.3]}, at, PATH_ISVC, path=path, token=None)
    read = served.reader(PATH_ISVC).read(COLUMNS, *window(at))
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 33.0, "income": 40.0, "channel": "app", "score": 0.3}
    ]

    before = served.counted("refused", "forbidden_service")
    other, body = unique(), {"instances": [[1, 2.0, "web"]]}
    refused = served.post("request", "p2", body, at, other, 403, path=path, token=None)
    assert f"for InferenceService {NAMESPACE}/{PATH_ISVC}" in refused.json()["detail"]
    assert f"from {NAMESPACE}/{other}" in refused.json()["detail"]
    # The same name in another namespace is another InferenceService.
    served.post("request", "p3", body, at, PATH_ISVC, 403, path=path, token=None, namespace=TENSORS)
    assert served.counted("refused", "forbidden_service") == before + 2
    assert served.reader(other).read(COLUMNS, *window(at)).status is DataStatus.NO_DATA
    assert PATH_SECRET not in served.client.get("/metrics").text


# -------------------------------------------------------------------------------- refusals


def test_oversized_events_get_413_with_the_limit(served: Served) -> None:
    isvc, at = unique(), utc_now()
    big = json.dumps({"instances": [[i, float(i), "web"] for i in range(40_000)]}).encode()
    assert len(big) > LIMIT
    declared = served.client.post(
        "/sink/kserve", content=big, headers=headers("request", "big", at, isvc)
    )
    assert declared.status_code == 413
    assert str(LIMIT) in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size shows only while reading
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    cut = served.counted("refused", "disconnected")
    chunked = served.client.post(
        "/sink/kserve", content=chunks(), headers=headers("request", "big", at, isvc)
    )
    assert chunked.status_code == 413
    assert str(LIMIT) in chunked.json()["detail"]
    assert served.counted("refused", "disconnected") == cut + 1  # the sink saw it cut short
    assert served.reader(isvc).read(COLUMNS, *window(at)).status is DataStatus.NO_DATA


MALFORMED: list[tuple[str, dict[str, str | None], bytes, int, str, str]] = [
    ("no ce headers", {"ce-": None}, b'{"instances": [[1]]}', 400, "not a CloudEvent", ""),
    ("no ce-id", {"ce-id": None}, b'{"instances": [[1]]}', 400, "no id", ""),
    ("bad specversion", {"ce-specversion": "0.9"}, b'{"instances": [[1]]}', 400, "specversion", ""),
    ("bad JSON", {}, b'{"instances": [[1, 2,', 400, "not JSON", "not_json"),
    ("empty body", {}, b"", 400, "no body", "not_json"),
    ("unknown type", {"ce-type": "com.example.other"}, b"{}", 422, "unknown ce-type", ""),
    ("not v1 nor v2", {}, b'{"rows": [[1]]}', 422, "`instances` (v1) or `inputs` (v2", ""),
    ("a JSON list", {}, b"[[1, 2]]", 422, "JSON list", "invalid_payload"),
    (
        "v2 data and shape disagree",
        {},
        b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1,2,3,4,5]}]}',
        422,
        "inputs[0] ('x'): shape [2, 3] holds 6 values, but its data has 5",
        "invalid_payload",
    ),
    (
        "v2 batch sizes disagree",
        {},
        b'{"inputs": [{"name": "a", "shape": [2], "data": [1, 2]},'
        b' {"name": "b", "shape": [3], "data": [1, 2, 3]}]}',
        422,
        "inputs[1] ('b') has 3 rows but inputs[0] has 2",
        "",
    ),
    (
        "v2 tensor without shape",
        {},
        b'{"inputs": [{"name": "a", "data": [1]}]}',
        422,
        "`shape`",
        "",
    ),
    ("a 1 KB ce-id", {"ce-id": "i" * 1024}, b'{"instances": [[1]]}', 400, "ce-id has 1024", ""),
    (
        "a long extension",
        {"ce-endpoint": "e" * 300},
        b'{"instances": [[1]]}',
        400,
        "ce-endpoint has 300 characters; the sink takes at most 256",
        "long_attribute",
    ),
]


@pytest.mark.parametrize(
    ("change", "body", "status", "says", "reason"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_events_are_refused_with_the_reason(
    served: Served,
    change: dict[str, str | None],
    body: bytes,
    status: int,
    says: str,
    reason: str,
) -> None:
    isvc, at = unique(), utc_now()
    sent = headers("request", "m1", at, isvc)
    for name, value in change.items():
        if value is None:  # drop the header, or every ce-* header for "ce-"
            sent = {k: v for k, v in sent.items() if not k.startswith(name)}
        else:
            sent[name] = value
    before = served.counted("refused", reason) if reason else 0.0
    answer = served.client.post("/sink/kserve", content=body, headers=sent)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    if reason:
        assert served.counted("refused", reason) == before + 1
    assert served.reader(isvc).read(COLUMNS, *window(at)).status is DataStatus.NO_DATA


def test_a_structured_body_that_is_not_an_event_is_400(served: Served) -> None:
    answer = served.client.post(
        "/sink/kserve",
        content=b"not json",
        headers={
            "content-type": "application/cloudevents+json",
            "authorization": f"Bearer {TOKEN}",
        },
    )
    assert answer.status_code == 400
    assert "structured mode" in answer.json()["detail"]


# What the target reading the event could not use: (id, kind, body, namespace, reason, says).
DOES_NOT_FIT: list[tuple[str, str, Any, str, str, str]] = [
    (
        "4 positional inputs for 3 features",
        "request",
        {"instances": [[31, 52.5, "web", 7]]},
        NAMESPACE,
        "column_count",
        "request row 0 has 4 positional value(s), but target 'credit-model' (source "
        "'inferences') declares 3 features ['age', 'income', 'channel']",
    ),
    (
        "2 positional outputs for 1 prediction",
        "response",
        {"predictions": [[0.1, 0.9]]},
        NAMESPACE,
        "column_count",
        "set output_names on the source",
    ),
    (
        "a 2-D input tensor of the wrong width",
        "request",
        {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
        TENSORS,
        "column_count",
        "target 'vision-model' (source 'tensors') declares 3 features ['x', 'y', 'z']",
    ),
    (
        "instances naming no declared column",
        "request",
        {"instances": [{"height": 1.8, "weight": 80}]},
        NAMESPACE,
        "unknown_column",
        "names ['height', 'weight'], none of the columns",
    ),
    (
        "a string for a numeric column",
        "request",
        {"instances": [[31, "52.5", "web"]]},
        NAMESPACE,
        "not_numeric",
        "column 'income' of target 'credit-model' is numeric, but the value is a string ('52.5')",
    ),
    (
        "a list for a numeric column",
        "request",
        {"instances": [{"age": [31], "income": 5.0, "channel": "web"}]},
        NAMESPACE,
        "not_numeric",
        "column 'age' of target 'credit-model' is numeric, but the value is a list",
    ),
    (
        "true for a numeric column",
        "response",
        {"predictions": [True]},
        NAMESPACE,
        "not_numeric",
        "column 'score' of target 'credit-model' is numeric, but the value is a boolean",
    ),
    (
        "an object for a categorical column",
        "request",
        {"instances": [[31, 52.5, {"name": "web"}]]},
        NAMESPACE,
        "not_categorical",
        "column 'channel' of target 'credit-model' is categorical, but the value is an object",
    ),
    (
        "an integer no float holds",
        "request",
        b'{"instances": [[1' + b"0" * 400 + b', 2.0, "web"]]}',
        NAMESPACE,
        "not_numeric",
        "column 'age' of target 'credit-model' is numeric, but the value is an integer",
    ),
    (
        "an event no source reads",
        "request",
        {"instances": [[31, 52.5, "web"]]},
        "elsewhere",
        "no_source",
        "no `type: kserve` source reads inference_service",
    ),
]


@pytest.mark.parametrize(
    ("kind", "body", "namespace", "reason", "says"),
    [case[1:] for case in DOES_NOT_FIT],
    ids=[case[0] for case in DOES_NOT_FIT],
)
def test_events_a_target_cannot_use_get_422_naming_the_column(
    served: Served, kind: str, body: Any, namespace: str, reason: str, says: str
) -> None:
    isvc, at = unique(), utc_now()
    before = served.counted("refused", reason)
    refused = served.post(kind, "n1", body, at, isvc, 422, namespace=namespace)
    assert says in refused.json()["detail"]
    assert served.counted("refused", reason) == before + 1
    read = served.reader(isvc, now=at + PAIR_TIMEOUT * 2, namespace=namespace)
    assert read.read(COLUMNS, *window(at)).status is DataStatus.NO_DATA


def test_refused_events_leave_the_window_testable(served: Served) -> None:
    """What a sloppy or hostile sender posts among good events: the window is still tested."""
    isvc, now = unique(), utc_now()
    rng = np.random.default_rng(11)
    for i in range(30):
        at = now - timedelta(seconds=60 - i)
        row = [float(rng.normal(40, 10)), float(rng.normal(50, 5)), "web"]
        served.post("request", f"g{i}", {"instances": [row]}, at, isvc)
        served.post("response", f"g{i}", {"predictions": [0.5]}, at, isvc)
    answers = [
        served.client.post(
            "/sink/kserve",
            content=body if isinstance(body, bytes) else json.dumps(body).encode(),
            headers=headers(kind, "bad", now - timedelta(seconds=10), isvc),
        ).status_code
        for _, kind, body, namespace, _, _ in DOES_NOT_FIT
        if namespace == NAMESPACE
    ]
    read = served.reader(isvc).read(COLUMNS, now - timedelta(minutes=2), now)
    assert read.status is DataStatus.OK, read.reason
    assert len(read.frame) == 30 and not read.set_aside
    assert [str(t) for t in read.frame.dtypes[["age", "income", "score"]]] == ["float64"] * 3
    seen = served.daemon.observer.observe(served.config.targets[0], utc_now())
    assert seen.samples_status is DataStatus.OK, seen.samples_reason
    assert set(answers) == {422}


def test_ce_time_far_from_the_daemons_clock_is_refused(served: Served) -> None:
    """Refused, not clamped: a clamped time would file the rows in the wrong window."""
    isvc, now = unique(), utc_now()
    body = {"instances": [[1, 2.0, "web"]]}
    skewed, old = served.counted("refused", "clock_skew"), served.counted("refused", "too_old")
    ahead = served.post("request", "f1", body, now + timedelta(minutes=10), isvc, 422)
    assert "ahead of the daemon's clock" in ahead.json()["detail"]
    assert "daemon.sink.max_clock_skew (5m)" in ahead.json()["detail"]
    served.post("request", "f2", body, datetime(2999, 1, 1, tzinfo=UTC), isvc, 422)
    late = served.post("request", "f3", body, now - timedelta(hours=4), isvc, 422)
    assert "old, older than daemon.sink.max_event_age (3h)" in late.json()["detail"]
    served.post("request", "f4", body, datetime(1999, 1, 1, tzinfo=UTC), isvc, 422)
    assert served.counted("refused", "clock_skew") == skewed + 2
    assert served.counted("refused", "too_old") == old + 2

    # Within the limits an event keeps its ce-time; without one it takes the time received.
    served.post("request", "f5", body, now + timedelta(minutes=2), isvc)
    served.post("request", "f6", body, None, isvc)
    received = utc_now()
    reader = served.reader(isvc, now=now + timedelta(minutes=10))
    read = reader.read(COLUMNS, now - timedelta(minutes=1), now + timedelta(minutes=5))
    times = sorted(read.frame["timestamp"])
    assert len(times) == 2
    assert now <= times[0] <= received
    assert times[1] == pd.Timestamp(now + timedelta(minutes=2)).floor("us")


def test_deep_nesting_is_400_and_the_daemon_keeps_serving(served: Served) -> None:
    isvc, at = unique(), utc_now()
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_value = b"[" * 100_000 + b"1" + b"]" * 100_000
    tensor = {"name": "age", "shape": [1], "datatype": "FP32", "data": [1]}
    for _ in range(40):  # parses in the route, but far deeper than a tensor's dimensions
        tensor["data"] = [tensor["data"]]
    structured = {
        "specversion": "1.0",
        "id": "deep",
        "type": REQUEST,
        "source": "http://localhost:9081/",
        "inferenceservicename": isvc,
        "namespace": NAMESPACE,
        "component": COMPONENT,
    }
    text = {**headers("request", "d3", at, isvc), "content-type": "text/plain"}
    cases = [
        (headers("request", "d1", at, isvc), b'{"instances": ' + deep + b"}"),
        (text, b'{"instances": ' + deep + b"}"),
        (
            {"content-type": "application/cloudevents+json", "authorization": f"Bearer {TOKEN}"},
            json.dumps(structured).encode()[:-1] + b', "data": ' + deep + b"}",
        ),
        (
            headers("request", "d4", at, isvc),
            b'{"inputs": [{"name": "age", "shape": [1], "data": ' + deep_value + b"}]}",
        ),
        (headers("request", "d5", at, isvc), json.dumps({"inputs": [tensor]}).encode()),
    ]
    before = served.counted("refused", "too_deep")
    for sent, body in cases:
        assert len(body) < LIMIT
        answer = served.client.post("/sink/kserve", content=body, headers=sent)
        assert answer.status_code == 400, answer.text
        assert "deep" in answer.json()["detail"]
    assert served.counted("refused", "too_deep") == before + len(cases)

    assert served.client.get("/healthz").status_code == 200
    served.post("request", "ok", {"instances": [[3, 4.0, "app"]]}, at, isvc)
    served.post("response", "ok", {"predictions": [0.2]}, at, isvc)
    read = served.reader(isvc).read(COLUMNS, *window(at))
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 3.0, "income": 4.0, "channel": "app", "score": 0.2}
    ]


def test_every_answer_is_counted(served: Served) -> None:
    isvc, at = unique(), utc_now()
    stored = served.counted("stored", "ok")
    served.post("request", "c1", {"instances": [[1, 2.0, "web"]]}, at, isvc)
    served.post("response", "c1", {"predictions": [0.5]}, at, isvc)
    assert served.counted("stored", "ok") == stored + 2


# ---------------------------------------------------------------------------- store upkeep


def sink_bytes(served: Served) -> int:
    return sum(f.stat().st_size for f in Path(served.config.daemon.sink.path).rglob("*.jsonl"))


def test_an_event_is_stored_once_not_once_per_row(served: Served) -> None:
    """A 300 KB event with the longest ce-id takes about its own size on disk."""
    isvc, at = unique(), utc_now()
    ce_id = "i" * 256
    instances = [[i % 97, i / 7, "web" if i % 2 else "app"] for i in range(9_000)]
    body = json.dumps({"instances": instances}).encode()
    assert 250_000 < len(body) < LIMIT
    before = sink_bytes(served)
    served.post("request", ce_id, body, at, isvc)
    assert sink_bytes(served) - before < len(body) + 1024
    read = served.reader(isvc, now=at + PAIR_TIMEOUT * 2).read(COLUMNS, *window(at))
    assert len(read.frame) == 9_000
    assert read.frame["income"].iloc[-1] == 8_999 / 7


def test_stored_lines_that_do_not_fit_are_set_aside(served: Served) -> None:
    """Lines of the previous format still read; lines that no longer fit (the config changed,
    a crash, a hand edit) are set aside and counted, and the rest of the window is tested."""
    isvc, at = unique(), utc_now()
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    meta = {"inference_service": isvc, "namespace": NAMESPACE, "component": COMPONENT}

    def line(kind: str, ce_id: str, values: Any, row: int = 0) -> bytes:  # the old format
        record = {"time": stamp, "kind": kind, "id": ce_id, "row": row, **meta, "values": values}
        return json.dumps(record).encode() + b"\n"

    lines = [
        line("request", "old", [41, 50.0, "app"]),
        line("request", "old", [42, 51.0, "web"], row=1),
        line("response", "old", [0.7]),
        line("response", "old", [0.8], row=1),
        b'{"time": "' + stamp.encode() + b'", "kind": "request", "id": \n',  # corrupt
        line("response", "wide", [0.1, 0.2, 0.3, 0.4, 0.5]),  # more outputs than columns
        line("request", "wide", [43, 52.0, "app", 1.0]),  # a feature the target dropped
        line("request", "nested", [[44], 53.0, "web"]),  # a list for a number
        line("response", "nested", [0.9]),
    ]
    directory = Path(served.config.daemon.sink.path) / at.strftime(PARTITIONING)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"previous-version-{isvc}.jsonl").write_bytes(b"".join(lines))

    read = served.reader(isvc, now=at + PAIR_TIMEOUT * 2).read(COLUMNS, *window(at))
    assert read.status is DataStatus.OK, read.reason
    assert sorted(records(read.frame.drop(columns="timestamp")), key=str) == sorted(
        [
            {"age": 41.0, "income": 50.0, "channel": "app", "score": 0.7},
            {"age": 42.0, "income": 51.0, "channel": "web", "score": 0.8},
            {"age": None, "income": 53.0, "channel": "web", "score": 0.9},
        ],
        key=str,
    )
    assert sorted((a.what, a.reason, a.count) for a in read.set_aside) == [
        ("row", "column_count", 1),  # the request with 4 inputs
        ("row", "column_count", 1),  # the response with 5 outputs
        ("row", "corrupt", 1),
        ("value", "not_scalar", 1),
    ]
    assert "input_names" in read.reason and "output_names" in read.reason


def test_retention_removes_every_partition_past_it(served: Served) -> None:
    """Times outside the limits are refused, so every partition the sink holds ages out."""
    assert served.daemon.scheduler.get_job(":sink-retention") is not None
    store, root = served.daemon.sink, Path(served.config.daemon.sink.path)
    assert store is not None
    now, body = utc_now(), {"instances": [[1, 2.0, "web"]]}
    for hours in range(3):  # the last three hours
        served.post("request", f"r{hours}", body, now - timedelta(hours=hours, minutes=1), unique())
    for year in (1999, 2999):  # a partition retention would never (or not for ages) reach
        served.post("request", "y", body, datetime(year, 1, 1, tzinfo=UTC), unique(), 422)
    for days in (2, 3, 4):  # days ago, written by the previous version
        directory = root / (now - timedelta(days=days)).strftime(PARTITIONING)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "previous.jsonl").write_text("{}\n")

    removed = store.prune(now + timedelta(days=1, hours=3))  # past even max_clock_skew
    assert {(now - timedelta(days=d)).strftime(PARTITIONING) for d in (2, 3, 4)} <= set(removed)
    assert now.strftime(PARTITIONING) in removed
    assert list(root.iterdir()) == []
    # The sink goes on storing.
    isvc = unique()
    served.post("request", "after", body, utc_now(), isvc)
    assert (
        served.reader(isvc, now=now + PAIR_TIMEOUT * 2).read(COLUMNS, *window(now)).frame
        is not None
    )


def test_a_torn_last_line_is_skipped(served: Served) -> None:
    isvc, at = unique(), utc_now()
    served.post("request", "t1", {"instances": [[5, 6.0, "app"]]}, at, isvc)
    served.post("response", "t1", {"predictions": [0.4]}, at, isvc)
    directory = Path(served.config.daemon.sink.path) / at.strftime(PARTITIONING)
    # What a crash mid-write leaves: a file of an earlier process ending in half a line.
    (directory / "crashed-writer.jsonl").write_bytes(
        f'{{"time":"{at:%Y-%m-%dT%H:%M:%S.%f}Z","kind":"request","id":"t2","infer'.encode()
    )
    read = served.reader(isvc).read(COLUMNS, *window(at))
    assert read.status is DataStatus.OK
    assert [(a.reason, a.count) for a in read.set_aside] == [("torn", 1)]
    assert records(read.frame.drop(columns="timestamp")) == [
        {"age": 5.0, "income": 6.0, "channel": "app", "score": 0.4}
    ]
    (directory / "crashed-writer.jsonl").unlink()


# ------------------------------------------------------------------------------------ kill -9


def test_every_acknowledged_event_survives_kill_9(tmp_path: Path) -> None:
    """Twice: the daemon is SIGKILLed while 32 events are in flight, then restarted on the same
    sink (the killed writer's file may end in a torn line; the new process writes its own)."""
    port = free_port()
    config_path = write_config(tmp_path, port)
    at = utc_now()
    acked: list[tuple[str, float]] = []
    for run in range(2):
        daemon = _start_daemon(config_path, port, tmp_path / f"daemon-{run}.log")
        try:
            sent = _send_until_killed(
                f"http://127.0.0.1:{port}", at, daemon.pid, first=run * 1000, kill_after=300
            )
            acked += asyncio.run(sent)
            daemon.wait(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert daemon.returncode == -signal.SIGKILL
    assert len(acked) >= 600

    sink = load_config(config_path).daemon.sink
    spec = KServeSource(type="kserve", inference_service=ISVC)
    later = at + PAIR_TIMEOUT * 2  # every half settled: read alone if its partner was lost
    read = KServeReader("inferences", spec, sink, clock=lambda: later).read(COLUMNS)
    assert read.frame is not None, read.reason
    stored = {("request", i) for i in read.frame["age"].dropna()}
    stored |= {("response", i) for i in read.frame["score"].dropna()}
    lost = sorted(set(acked) - stored)
    assert not lost, f"{len(lost)} acknowledged events are not in the store: {lost[:5]}"


def _start_daemon(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`mlwatchdog run` on `config`, once /healthz answers."""
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [COMMAND, "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "MLWATCHDOG_PORT"},
        )
    deadline = time.monotonic() + 60
    while True:
        assert daemon.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return daemon
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            daemon.kill()
            pytest.fail(f"the daemon did not become healthy:\n{log.read_text()}")
        time.sleep(0.1)


async def _send_until_killed(
    url: str, at: datetime, pid: int, first: int, kill_after: int, pairs: int = 400
) -> list[tuple[str, float]]:
    """Sends request and response events 32 at a time and SIGKILLs the daemon after
    `kill_after` acknowledgements; returns the acknowledged (kind, value) of each event."""
    acked: list[tuple[str, float]] = []
    gate = asyncio.Semaphore(32)

    async def send(client: httpx.AsyncClient, kind: str, i: int) -> None:
        body = {"instances": [[i, 1.0, "web"]]} if kind == "request" else {"predictions": [i]}
        async with gate:
            try:
                answer = await client.post(
                    "/sink/kserve",
                    content=json.dumps(body).encode(),
                    headers=headers(kind, f"k{i}", at + timedelta(milliseconds=i)),
                )
            except httpx.TransportError:
                return  # in flight when the daemon died: never acknowledged
        if answer.status_code == 200:
            acked.append((kind, float(i)))
            if len(acked) == kill_after:
                os.kill(pid, signal.SIGKILL)

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        await asyncio.gather(
            *(
                send(client, kind, i)
                for i in range(first, first + pairs)
                for kind in ("request", "response")
            )
        )
    return acked
