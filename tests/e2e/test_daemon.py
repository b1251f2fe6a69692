"""`mlwatchdog run` end to end: the installed command as a real process, on files the test writes.

One incident from start to finish, with short times (interval 2s, window 12s, for 6s, verify 16s):
undrifted samples -> ready and healthy; drifted samples -> the checks go pending, then firing, and
exactly one dry-run rollback is decided and logged as the planned Kubernetes requests; more
evaluations do not act again; the rollback does not cure the (still drifting) samples, so the
target escalates. SIGTERM stops the daemon cleanly with exit 0. A restart on the same state_dir
restores the incident and does not roll back a second time. A config with `dry_run: false` is
refused at start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlwatchdog.demo import customers, write_batch

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules.yaml"
COMMAND = shutil.which("mlwatchdog") or str(Path(sys.executable).parent / "mlwatchdog")
TARGET = "credit-model"
TRIGGER_CHECKS = ("feature_drift", "prediction_drift")  # both drift in the demo's drifted samples

INTERVAL = 2.0  # seconds between evaluations
FOR = 6.0  # a breach must last this long before its check fires
WINDOW = 12.0  # each evaluation tests [now - WINDOW, now)
VERIFY = 16.0  # after the rollback, recovery is judged after this long (must exceed WINDOW)
CALM_RATE = 25  # rows/s before the drift (300 rows per window)
DRIFT_RATE = 100  # rows/s of drifted samples: they dominate the window within seconds

T = TypeVar("T")

pytestmark = pytest.mark.timeout(240)


# ------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, port: int, *, dry_run: bool = True) -> Path:
    """rules.yaml with short times, its sources and state in tmp_path, served on `port`."""
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text())
    rules["daemon"].update(
        http={"host": "127.0.0.1", "port": port},
        state_dir=str(tmp_path / "state"),
        jitter="0s",  # evaluations every INTERVAL exactly, so the timings below hold
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


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLWATCHDOG_PORT"}


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
    """`mlwatchdog run` as a subprocess, its stdout and stderr in a file, with HTTP helpers."""

    def __init__(self, config: Path, port: int, output: Path, *extra: str) -> None:
        self.port = port
        self.output = output
        self._out = output.open("wb")
        self.proc = subprocess.Popen(
            [COMMAND, "run", "--config", str(config), *extra],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env=environment(),
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)

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


# -------------------------------------------------------------------------------------- tests


def test_drift_rolls_back_once_in_dry_run_and_a_restart_does_not_repeat_it(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    daemon = DaemonProcess(config, port, tmp_path / "daemon-1.log")
    processes.append(daemon)

    # Alive, then ready once the target has been evaluated; healthy on undrifted samples.
    readiness: list[httpx.Response] = []
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon, readiness), timeout=30, every=0.05)
    for response in readiness[:-1]:  # if it was asked before the first evaluation ended
        assert response.status_code == 503
        assert response.json()["waiting_for_first_evaluation"] == [TARGET]
    assert readiness[-1].json() == {"status": "ready"}
    assert daemon.events("evaluated"), "ready before any evaluation was logged"
    assert evaluations(daemon) >= 1
    healthz = daemon.get("/healthz")
    assert healthz is not None and healthz.status_code == 200
    assert healthz.json() == {"status": "ok"}
    started = daemon.events("daemon started")
    assert started and started[0]["targets"] == [TARGET]

    # A couple of evaluations on undrifted samples: counted, with data, every check inactive.
    counted = wait_for(daemon, "3 evaluations", lambda: evaluations(daemon) >= 3 or None, 20)
    assert counted
    metrics = daemon.metrics()
    total = value(metrics, "mlwatchdog_evaluations_total", target=TARGET)
    assert value(metrics, "mlwatchdog_evaluations_total", target=TARGET, result="ok") == total
    assert value(metrics, "mlwatchdog_target_state", target=TARGET, state="healthy") == 1
    for check in TRIGGER_CHECKS:
        assert value(metrics, "mlwatchdog_check_state", target=TARGET, check=check) == 0
    assert rollbacks(daemon) is None

    # Drift: each trigger check goes pending, then firing, then one dry-run rollback.
    feeder.drift.set()
    seen: dict[str, list[float]] = {check: [] for check in TRIGGER_CHECKS}

    def rolled_back() -> float | None:
        metrics = daemon.metrics()
        for check in TRIGGER_CHECKS:
            state = value(metrics, "mlwatchdog_check_state", target=TARGET, check=check)
            if state is not None and (not seen[check] or seen[check][-1] != state):
                seen[check].append(state)
        return value(
            metrics, "mlwatchdog_decisions_total", target=TARGET, kind="rollback", dry_run="true"
        )

    assert wait_for(daemon, "a dry-run rollback", rolled_back, timeout=60, every=0.1) == 1
    for check in TRIGGER_CHECKS:
        states = seen[check]
        assert 1 in states and 2 in states, f"{check}: states seen {states}"
        assert states.index(1) < states.index(2), f"{check}: states seen {states}"
        # The log has every evaluation: firing only once the breach has lasted `for`.
        logged = evaluated_states(daemon, check)
        pending = next(at for at, state in logged if state == "pending")
        firing = next(at for at, state in logged if state == "firing")
        assert firing - pending >= timedelta(seconds=FOR), logged

    # The decision and the exact requests it would send, logged as JSON on stdout.
    (decision,) = daemon.events("decision: rollback")
    assert decision["target"] == TARGET
    assert decision["dry_run"] is True and decision["to"] == "prior"
    incident = decision["incident"]
    assert incident.startswith(f"{TARGET}-")
    assert any(r.startswith("prediction_drift:") for r in decision["reasons"])
    planned = daemon.events("dry-run rollback: would send")
    assert [(p["method"], p["path"], p["content_type"]) for p in planned] == [
        (
            "PATCH",
            "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/credit-model/status",
            "application/merge-patch+json",
        ),
        (
            "PATCH",
            "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/credit-model",
            "application/json-patch+json",
        ),
    ]
    assert planned[0]["body"] == {"status": {"abort": True}}
    assert all(p["incident"] == incident for p in planned)
    assert all(p["workload"] == "argo-rollout/models/credit-model" for p in planned)
    (outcome,) = daemon.events("action outcome")
    assert outcome["ok"] is True and outcome["state"] == "verifying"
    assert "none sent" in outcome["detail"]

    # The samples keep drifting: more evaluations, no second rollback for the same incident, and
    # once verify.window is over, the incident escalates to a human instead.
    after = evaluations(daemon)
    wait_for(daemon, "4 more evaluations", lambda: evaluations(daemon) >= after + 4 or None, 20)
    assert rollbacks(daemon) == 1
    wait_for(
        daemon,
        "the escalation after verify.window",
        lambda: daemon.targets()[TARGET]["phase"] == "escalated",
        timeout=20,
    )
    after = evaluations(daemon)
    wait_for(daemon, "2 more evaluations", lambda: evaluations(daemon) >= after + 2 or None, 10)
    metrics = daemon.metrics()
    assert value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind="rollback") == 1
    assert value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind="escalate") == 1
    assert value(metrics, "mlwatchdog_target_state", target=TARGET, state="escalated") == 1
    assert len(daemon.events("decision: rollback")) == 1
    assert len(daemon.events("dry-run rollback: would send")) == 2
    persisted = daemon.targets()[TARGET]
    assert persisted["incident"]["id"] == incident
    assert persisted["incident"]["acted_at"] is not None

    # SIGTERM: the running evaluation finishes, the daemon says so and exits 0 within seconds.
    code, seconds = daemon.stop()
    assert code == 0, f"exit code {code} after SIGTERM"
    assert seconds < 5
    assert daemon.logs()[-1]["event"] == "daemon stopped"
    assert "Traceback" not in daemon.text()
    saved = json.loads((tmp_path / "state" / f"{TARGET}.json").read_text())
    assert saved["phase"] == "escalated" and saved["incident"]["id"] == incident

    # Restart on the same state_dir (another port, given on the command line): the incident is
    # restored, the samples still drift, and nothing is rolled back again.
    port2 = free_port()
    again = DaemonProcess(config, port2, tmp_path / "daemon-2.log", "--port", str(port2))
    processes.append(again)
    wait_for(again, "/readyz 200 after the restart", lambda: is_ready(again), timeout=30)
    (restored,) = again.events("state restored")
    assert restored["state"] == "escalated" and restored["incident"] == incident
    targets = again.targets()[TARGET]
    assert targets["phase"] == "escalated"
    assert targets["incident"]["id"] == incident
    assert targets["incident"]["acted_at"] == persisted["incident"]["acted_at"]
    wait_for(again, "3 evaluations after the restart", lambda: evaluations(again) >= 3 or None, 20)
    metrics = again.metrics()
    assert not value(metrics, "mlwatchdog_decisions_total", target=TARGET, kind="rollback")
    assert value(metrics, "mlwatchdog_target_state", target=TARGET, state="escalated") == 1
    assert again.events("decision: rollback") == []
    assert again.events("dry-run rollback: would send") == []
    assert again.targets()[TARGET]["phase"] == "escalated"

    code, seconds = again.stop()
    assert code == 0 and seconds < 5
    assert again.logs()[-1]["event"] == "daemon stopped"
    assert feeder.error is None


def test_dry_run_false_is_refused_at_start(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, dry_run=False)
    done = subprocess.run(
        [COMMAND, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=environment(),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"target(s) ['{TARGET}'] set rollback.dry_run: false" in done.stderr
    assert "set dry_run: true" in done.stderr
    assert "daemon started" not in done.stdout and "http listening" not in done.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # nothing was served
        assert sock.connect_ex(("127.0.0.1", port)) != 0
