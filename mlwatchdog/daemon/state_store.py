"""Target states on disk: one JSON file per target, written atomically, read at start-up.

A restarted daemon continues where it stopped: pending timers keep their start, and an incident
that already acted does not act again.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlwatchdog.core import TargetState, from_json, to_json


class StateStore:
    """Reads and writes `<state_dir>/<target>.json`."""

    def __init__(self, directory: str | Path, log: Any) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = log

    def path(self, target: str) -> Path:
        return self.directory / f"{target}.json"

    def load(self, target: str) -> TargetState | None:
        """The saved state, or None if there is none (or it was unreadable and set aside)."""
        path = self.path(target)
        if not path.exists():
            return None
        try:
            return from_json(TargetState, json.loads(path.read_text()))
        except (ValueError, OSError) as exc:
            aside = path.with_suffix(f".corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S}")
            path.rename(aside)
            self.log.error(
                "state file unreadable; starting this target afresh",
                target=target,
                moved_to=str(aside),
                error=str(exc),
            )
            return None

    def save(self, state: TargetState) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        path = self.path(state.target)
        tmp = path.with_suffix(".json.tmp")
        with tmp.open("w") as out:
            json.dump(to_json(state), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
