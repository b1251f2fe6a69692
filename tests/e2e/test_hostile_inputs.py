"""The daemon under hostile and sloppy callers keeps serving, answers each with the right refusal,
and its memory stays bounded: after every input of tests/servers/hostile.py, its RSS is within
BOUND of what it was before them (benchmarks/README.md "Hostile inputs" records the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.daemon_process import DaemonProcess, Feeder, is_ready, wait_for
from tests.servers.hostile import MIB, TOKEN, attack, hostile_config
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(400)

BOUND = 100 * MIB


def test_hostile_inputs_are_refused_and_memory_stays_bounded(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = hostile_config(tmp_path, port)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log", token=TOKEN)
    processes.append(daemon)
    wait_for(daemon, "readiness", lambda: is_ready(daemon), timeout=60)

    steps = attack(daemon, config)
    baseline = steps[0].rss
    for step in steps[1:]:
        grown = step.rss - baseline
        assert grown < BOUND, f"after {step.name}: RSS grew by {grown / MIB:.0f} MiB"
    assert is_ready(daemon)  # still serving, every write working
    assert daemon.get("/api/v1/targets") is not None
    code, _ = daemon.stop()
    assert code == 0
