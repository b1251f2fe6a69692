"""kill -9 in the middle of a write, many times at random moments: a state file is always the old
one or the new one (it loads, nothing is set aside), and a bundle folder is either complete (it
loads and replays bit for bit) or ignored; retention removes the incomplete ones."""

from __future__ import annotations

import io
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import structlog
import structlog.testing

from mlwatchdog.core import to_json
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.replay import BundleWriter, list_bundles, load_bundle
from mlwatchdog.replay.bundle import REFERENCES
from mlwatchdog.rules.schema import Bundles
from tests.faults.crash_worker import KEEP, event
from tests.integration.bundle_scenario import TARGET

ROOT = Path(__file__).resolve().parents[2]
KILLS = 30  # of each kind
DELAY = (0.005, 0.12)  # seconds of writing before the kill, drawn uniformly

pytestmark = pytest.mark.timeout(180)


class Worker:
    """tests/faults/crash_worker.py: forks a writing child on demand, for us to kill."""

    def __init__(self, kind: str, folder: Path, bundle: str, errors: Path) -> None:
        self.errors = errors
        self._stderr = errors.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.crash_worker", kind, str(folder), bundle],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=ROOT,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._line(60) == "ready"
        self.random = random.Random(20261125)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put("")  # the worker is gone

    def _line(self, timeout: float = 30) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the crash worker said nothing for {timeout}s: {self.errors.read_text()}")
        if not line:
            pytest.fail(f"the crash worker exited: {self.errors.read_text()}")
        return line

    def kill_a_writer(self, generation: int) -> None:
        """Fork a child that writes in a loop, and SIGKILL it after a random delay."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"fork {generation}\n")
        self.proc.stdin.flush()
        pid = int(self._line())
        time.sleep(self.random.uniform(*DELAY))
        os.kill(pid, signal.SIGKILL)
        status = int(self._line().removeprefix("exit "))
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            pytest.fail(f"the writer ended by itself ({status}): {self.errors.read_text()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()


def capturing_log() -> tuple[Any, structlog.testing.LogCapture]:
    capture = structlog.testing.LogCapture()
    log = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[capture],
        wrapper_class=structlog.BoundLogger,
    )
    return log, capture


def test_kill_9_during_state_saves_leaves_the_old_or_the_new_state(
    tmp_path: Path, rollback_bundle: str, workers: list[Worker]
) -> None:
    recorded = load_bundle(rollback_bundle).recorded
    assert recorded.state_before is not None
    states = [recorded.state_before, recorded.state_after]
    saved = {json.dumps(to_json(s), sort_keys=True) for s in states}
    folder = tmp_path / "state"
    log, _ = capturing_log()
    StateStore(folder, log).save(states[0])  # the state a first kill may leave as it was
    worker = Worker("state", folder, rollback_bundle, tmp_path / "worker.err")
    workers.append(worker)
    mid_save = 0
    for generation in range(KILLS):
        worker.kill_a_writer(generation)
        mid_save += (folder / f"{TARGET}.json.tmp").exists()  # killed before the rename
        log, capture = capturing_log()
        state = StateStore(folder, log).load(TARGET)  # never raises
        assert state is not None, f"after kill {generation}: {capture.entries}"
        assert json.dumps(to_json(state), sort_keys=True) in saved, f"after kill {generation}"
        assert not capture.entries, capture.entries  # nothing set aside, nothing to say
        assert not list(folder.glob("*.corrupt-*"))
    # Else no kill landed in a save, and this test proved nothing.
    assert mid_save > 0, "no kill landed between a save's first write and its rename"


def test_kill_9_during_bundle_writes_lists_only_complete_bundles(
    tmp_path: Path, rollback_bundle: str, workers: list[Worker]
) -> None:
    folder = tmp_path / "bundles"
    worker = Worker("bundle", folder, rollback_bundle, tmp_path / "worker.err")
    workers.append(worker)
    incomplete: set[str] = set()  # folders a kill left without a manifest
    replayed: set[str] = set()
    for generation in range(KILLS):
        worker.kill_a_writer(generation)
        listed = list_bundles(str(folder))
        for path in listed:  # every listed bundle is whole: it loads
            load_bundle(path)
        if listed and listed[-1] not in replayed:  # the newest replays exactly
            assert load_bundle(listed[-1]).replay().differences() == [], listed[-1]
            replayed.add(listed[-1])
        names = {Path(p).name for p in listed}
        incomplete |= {p.name for p in folder.iterdir() if p.name not in {*names, REFERENCES}}
    assert incomplete, "no kill landed in the middle of a bundle write"
    assert replayed, "no writer lived to write a whole bundle"

    # Incomplete folders are the retention's: it counts them by their names' time like whole
    # bundles, so KEEP more writes leave only the KEEP newest, all whole.
    log, _ = capturing_log()
    writer = BundleWriter(Bundles(keep=KEEP), str(folder), log)
    frame = pd.read_parquet(Path(rollback_bundle) / "reference.parquet")
    recorded = replace(load_bundle(rollback_bundle).recorded, reference_frame=frame)
    for n in range(KEEP):
        writer.write(recorded, event(KILLS, n))
    left = sorted(p.name for p in folder.iterdir() if p.name != REFERENCES)
    assert left == [Path(p).name for p in list_bundles(str(folder))]
    # The one copy of the reference the bundles link to; none left behind by a kill.
    assert [p.name for p in (folder / REFERENCES).iterdir()] == [
        f"{recorded.observation.reference.fingerprint}.parquet"  # type: ignore[union-attr]
    ]
    assert left == [f"{Path(rollback_bundle).name}-g{KILLS:03d}-{n:06d}" for n in range(KEEP)]
