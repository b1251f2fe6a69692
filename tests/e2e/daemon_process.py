"""`mlwatchdog run` as a real process for end-to-end tests: its config (the bundled rules.yaml with
short times), a feeder writing live samples, and helpers to read its logs, metrics and HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlwatchdog.demo import customers, write_batch
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.objects import argo_canary, install_argo_controller
from tests.servers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules.yaml"
COMMAND = shutil.which("mlwatchdog") or str(Path(sys.executable).parent / "mlwatchdog")
TARGET = "credit-model"
ROLLOUT = f"/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/{TARGET}"  # its workload
TRIGGER_CHECKS = ("feature_drift", "prediction_drift")  # both drift in the demo's drifted samples

INTERVAL = 2.0  # seconds between evaluations
FOR = 6.0  # a breach must last this long before its check fires
WINDOW = 12.0  # each evaluation tests [now - WINDOW, now)
VERIFY = 16.0  # after the rollback, recovery is judged after this long (must exceed WINDOW)
CALM_RATE = 25  # rows/s before the drift (300 rows per window)
DRIFT_RATE = 100  # rows/s of drifted samples: they dominate the window within seconds

T = TypeVar("T")


def write_config(tmp_path: Path, port: int, *, dry_run: bool = True) -> Path:
    """rules.yaml with short times, its sources and state in tmp_path, served on `port`."""
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    rules["daemon"].update(
        http={"host": "127.0.0.1", "port": port},
        state_dir=str(tmp_path / "state"),
        jitter="0s",  # evaluations every INTERVAL exactly, so the timings below hold
        log_level="debug",  # every evaluation in the log: `evaluated` is a debug event
    )
    rules["sources"]["live"]["url"] = str(tmp_path / "live")
    rules["sources"]["training"]["url"] = str(ROOT / "examples/data/reference.parquet")
    (target,) = rules["targets"]
    assert target["name"] == TARGET
    target.update(
        {
            "interval": f"{INTERVAL:g}s",
            "for": f"{FOR:g}s",
            "resolve_after": "1m",
            "cooldown": "10m",
            "verify": {"window": f"{VERIFY:g}s"},
        }
    )
    target["samples"].update(window=f"{WINDOW:g}s", min_samples=100)
    target["rollback"]["dry_run"] = dry_run
    path = tmp_path / ("rules.yaml" if dry_run else "rules-live.yaml")
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def replica_config(
    tmp_path: Path,
    name: str,
    kubeconfig: Path,
    *,
    copies: Sequence[str] = (),
    verify: float = VERIFY,
    **election: Any,
) -> tuple[Path, int]:
    """A replica's rules (write_config, acting for real) sharing a Lease in namespace `models` of
    the emulated API with its peers; `election` overrides daemon.leader_election (e.g. shards).
    `copies`: names of alert-only copies of TARGET (workload none) added to the targets; `verify`:
    TARGET's verify.window in seconds. Its state and audit log are its own (as a pod's volume);
    its identity is `name`."""
    port = free_port()
    path = write_config(tmp_path, port, dry_run=False)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    rules["daemon"].update(
        state_dir=str(tmp_path / name / "state"),  # each replica its own (as emptyDir in a pod)
        audit_log=str(tmp_path / name / "audit.jsonl"),
        kubernetes={"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "attempts": 2},
        leader_election={
            "enabled": True,
            "lease": "mlwatchdog",
            "namespace": "models",
            "identity": name,
            "lease_duration": "4s",
            "renew_deadline": "3s",
            "retry_period": "1s",
            **election,
        },
    )
    (target,) = rules["targets"]
    target["verify"] = {"window": f"{verify:g}s"}
    for copy in copies:
        rollback = {**target["rollback"], "dry_run": True}
        rules["targets"].append({**target, "name": copy, "workload": {}, "rollback": rollback})
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(rules, sort_keys=False))
    return out, port


def audit_results(path: Path) -> list[str]:
    """The `result` of each record of an audit trail (none when it was never written)."""
    if not path.exists():
        return []
    return [json.loads(line)["result"] for line in path.read_text().splitlines() if line]


def environment(**overrides: str) -> dict[str, str]:
    """This process's environment, without a cluster (the daemon runs offline, dry-run), unless
    `overrides` give one (e.g. KUBECONFIG)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLWATCHDOG_PORT", "KUBERNETES_SERVICE_HOST")
    }
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return {**env, **overrides}


class Feeder(threading.Thread):
    """Writes one batch of live samples per second, as the model's logger would; drifted once
    `drift` is set. `backfill` first fills the window with undrifted history."""

    def __init__(self, out: Path) -> None:
        super().__init__(name="feeder", daemon=True)
        self.out = out
        self.rng = np.random.default_rng(20261125)
        self.drift = threading.Event()
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def batch(self, at: datetime, seconds: float, drifted: bool) -> None:
        n = int((DRIFT_RATE if drifted else CALM_RATE) * seconds)
        frame = customers(self.rng, n, drifted)
        offsets = self.rng.uniform(0, seconds, n)
        frame.insert(0, "timestamp", [at - timedelta(seconds=s) for s in offsets])
        write_batch(self.out, frame, at)

    def backfill(self) -> None:
        now = datetime.now(UTC)
        for ago in range(int(WINDOW), 0, -2):
            self.batch(now - timedelta(seconds=ago), 2.0, drifted=False)

    def run(self) -> None:
        try:
            while not self.stopped.wait(1.0):
                self.batch(datetime.now(UTC), 1.0, self.drift.is_set())
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


class DaemonProcess:
    """`mlwatchdog run` (or `command`: `sink`) as a subprocess, its stdout and stderr in a file,
    with HTTP helpers."""

    def __init__(
        self,
        config: Path,
        port: int,
        output: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        token: str | None = None,
        command: str = "run",
    ) -> None:
        self.port = port
        self.output = output
        self._out = output.open("wb")
        self.proc = subprocess.Popen(
            [COMMAND, command, "--config", str(config), *extra],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env=env or environment(),
        )
        # `token`: sent with every request of `http` (a daemon.auth credential of the config).
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Generous: an investigation renders reports, and CI machines are loaded.
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0, headers=headers)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (anything else on the output is skipped)."""
        lines = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    lines.append(json.loads(line))
        return lines

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.logs() if line.get("event") == event]

    def get(self, path: str) -> httpx.Response | None:
        """GET `path`, or None while the server does not answer (yet)."""
        try:
            return self.http.get(path)
        except httpx.TransportError:
            return None

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = self.get("/metrics")
        if response is None or response.status_code != 200:
            return {}
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def targets(self) -> dict[str, Any]:
        response = self.get("/targets")
        assert response is not None and response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    def kill(self) -> None:
        """SIGKILL (kill -9): no clean-up, no Lease released."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        """Kill the process if it still runs (teardown; never fails)."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.http.close()
        self._out.close()


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    """The sum of the samples `name` with (at least) these labels; None when there is none."""
    wanted = set(labels.items())
    found = [v for (n, lbls), v in metrics.items() if n == name and wanted <= lbls]
    return sum(found) if found else None


def evaluations(daemon: DaemonProcess) -> float:
    return value(daemon.metrics(), "mlwatchdog_evaluations_total", target=TARGET) or 0.0


def rollbacks(daemon: DaemonProcess) -> float | None:
    return value(
        daemon.metrics(),
        "mlwatchdog_decisions_total",
        target=TARGET,
        kind="rollback",
        dry_run="true",
    )


def wait_for(
    daemon: DaemonProcess,
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    every: float = 0.25,
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` on timeout or exit."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if daemon.proc.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g}s (last probe: {result!r})")
        time.sleep(every)


@pytest.fixture
def processes() -> Iterator[list[DaemonProcess]]:
    """Daemons started by the test: always killed at the end; their output printed (pytest shows
    it when the test failed)."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()
        print(f"----- output of {daemon.output.name} (exit {daemon.proc.returncode}) -----")
        print(daemon.text())


@pytest.fixture
def canary_api() -> Iterator[FakeKubeAPI]:
    """The emulated Kubernetes API with the Argo Rollout TARGET (namespace models) in the middle
    of a canary update from 1.4.0 to 1.5.0, and the emulated Argo controller."""
    with FakeKubeAPI() as fake:
        seed = argo_canary(
            name=TARGET,
            ns="models",
            stable_image="registry.example.com/credit-model:1.4.0",
            canary_image="registry.example.com/credit-model:1.5.0",
        )
        fake.seed(seed.objects)
        install_argo_controller(fake)
        yield fake
    assert not fake.internal_errors, fake.internal_errors


def rollout_writes(api: FakeKubeAPI) -> list[str]:
    """The writes to the Rollout TARGET the API applied (200), in order."""
    return [p.path for p in api.patches() if p.path.startswith(ROLLOUT) and p.status == 200]


def actions(daemon: DaemonProcess, result: str) -> float:
    """mlwatchdog_actions_total of that result, over the targets."""
    return value(daemon.metrics(), "mlwatchdog_actions_total", result=result) or 0.0


@pytest.fixture
def feeder(tmp_path: Path) -> Iterator[Feeder]:
    feed = Feeder(tmp_path / "live")
    feed.backfill()
    feed.start()
    yield feed
    feed.stopped.set()
    feed.join(10)
    if feed.error is not None:
        print(f"----- the feeder failed: {feed.error!r} -----")


def is_ready(daemon: DaemonProcess, answers: list[httpx.Response] | None = None) -> bool:
    """/readyz answers 200; every answer is kept in `answers`."""
    response = daemon.get("/readyz")
    if response is not None and answers is not None:
        answers.append(response)
    return response is not None and response.status_code == 200


def evaluated_states(daemon: DaemonProcess, check: str) -> list[tuple[datetime, str]]:
    """(evaluation time, check state) of every evaluation in the log, in order."""
    return [
        (datetime.fromisoformat(line["at"]), line["checks"][check]["state"])
        for line in daemon.events("evaluated")
    ]
