"""A process to kill -9 in the middle of a write: `python -m tests.faults.crash_worker KIND FOLDER
BUNDLE`, run by test_kill_during_writes.

It imports mlwatchdog once and reads the incident bundle BUNDLE, says `ready`, then for each line
`fork N` on stdin forks a child that writes in a loop until it is killed, and answers the child's
pid, then `exit <wait status>` once the child is gone (forking spares the second of imports per
kill). KIND `state`: the child saves the bundle's state before and after the decision in turn
(StateStore.save). KIND `bundle`: the child writes the bundle again and again under new names
(BundleWriter.write, keeping the newest KEEP, so retention runs too).
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import structlog

from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.replay import BundleWriter, Recorded, load_bundle
from mlwatchdog.rules.schema import Bundles

KEEP = 4


def event(generation: int, n: int) -> str:
    """A bundle's event, unique per write and sorting in the order written."""
    return f"decision-rollback-g{generation:03d}-{n:06d}"


def save_states(folder: Path, recorded: Recorded, log: Any) -> None:
    store = StateStore(folder, log)
    states = [recorded.state_before, recorded.state_after]
    n = 0
    while True:
        state = states[n % 2]
        assert state is not None
        store.save(state)
        n += 1


def write_bundles(folder: Path, recorded: Recorded, log: Any, generation: int) -> None:
    writer = BundleWriter(Bundles(keep=KEEP), str(folder), log)
    n = 0
    while True:
        writer.write(recorded, event(generation, n))
        n += 1


def main(kind: str, folder: Path, bundle: str) -> None:
    loaded = load_bundle(bundle)
    frame = pd.read_parquet(Path(bundle) / "reference.parquet")
    recorded = replace(loaded.recorded, reference_frame=frame)
    log = structlog.wrap_logger(structlog.PrintLogger(sys.stderr))
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, generation = line.strip().partition(" ")
        if command != "fork":
            return
        pid = os.fork()
        if pid == 0:  # the child: write until killed
            try:
                if kind == "state":
                    save_states(folder, recorded, log)
                else:
                    write_bundles(folder, recorded, log, int(generation))
            except BaseException:  # told to the test through the exit status
                traceback.print_exc()
            os._exit(3)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
