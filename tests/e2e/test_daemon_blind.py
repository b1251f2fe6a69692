"""A blind target end to end: `mlwatchdog run` as a real process on live samples; when the feeder
stops, the target goes blind one samples window after its window first came back empty (the
gauge, one log warning, the API and `mlwatchdog status`), and sees again when samples return."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.e2e.daemon_process import (
    COMMAND,
    TARGET,
    DaemonProcess,
    Feeder,
    environment,
    evaluations,
    is_ready,
    value,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(120)

WINDOW = 4  # seconds: short, so blindness comes within seconds of the feeder stopping


def blind(daemon: DaemonProcess) -> float | None:
    return value(daemon.metrics(), "mlwatchdog_target_blind", target=TARGET)


def status(daemon: DaemonProcess, *extra: str) -> str:
    done = subprocess.run(
        [COMMAND, "status", "--url", f"http://127.0.0.1:{daemon.port}", *extra],
        capture_output=True, text=True, timeout=30, check=False,
        env=environment(COLUMNS="200"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_target_whose_samples_stop_goes_blind_and_sees_again(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    rules = yaml.safe_load(config.read_text())
    rules["targets"][0]["samples"].update(window=f"{WINDOW}s", min_samples=20)
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    processes.append(daemon)
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=30)
    wait_for(daemon, "2 evaluations", lambda: evaluations(daemon) >= 2 or None, timeout=20)
    assert blind(daemon) == 0
    assert value(daemon.metrics(), "mlwatchdog_target_blind_since_seconds", target=TARGET) == 0

    # The model's logger stops: the window empties, and a window later the target is blind.
    feeder.stopped.set()
    feeder.join(10)
    stopped = datetime.now().astimezone()
    wait_for(daemon, "mlwatchdog_target_blind 1", lambda: blind(daemon) == 1, timeout=40)
    since = value(daemon.metrics(), "mlwatchdog_target_blind_since_seconds", target=TARGET)
    assert since is not None and since >= stopped.timestamp()  # the first empty window's time
    (warning,) = daemon.events("target blind")
    assert warning["level"] == "warning" and warning["missing"] == ["samples"]
    assert warning["reason"].startswith("samples (no_data): ")
    assert datetime.fromisoformat(warning["since"]).timestamp() == since
    response = daemon.get("/api/v1/targets")
    assert response is not None and response.status_code == 200
    (view,) = response.json()
    assert view["blind"] is True  # beside the phase, which it does not change
    assert datetime.fromisoformat(view["blind_since"]).timestamp() == since
    assert view["blind_reason"].startswith("samples (no_data): ")
    table = status(daemon)
    assert f"blind ({view['phase']})" in table and f"{TARGET} is blind since " in table
    (listed,) = json.loads(status(daemon, "--output", "json"))
    assert listed["blind"] is True and listed["blind_since"] == view["blind_since"]
    assert listed["blind_reason"].startswith("samples (no_data): ")  # the latest evaluation's

    # Samples come back: it sees again, with one warning, and stays blind no more.
    again = Feeder(tmp_path / "live")
    again.start()
    try:
        wait_for(daemon, "mlwatchdog_target_blind 0", lambda: blind(daemon) == 0, timeout=30)
        # While samples flow: once they stop, the target is blind again a window (4s) later.
        assert "blind" not in status(daemon)
    finally:
        again.stopped.set()
        again.join(10)
    assert len(daemon.events("target blind")) == 1
    (back,) = daemon.events("target sees again")
    assert back["level"] == "warning"
    assert datetime.fromisoformat(back["blind_since"]).timestamp() == since
