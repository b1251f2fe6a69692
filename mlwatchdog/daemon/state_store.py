"""Target states on disk: one JSON file per target, written atomically, read at start-up.

A restarted daemon continues where it stopped: pending timers keep their start, and an incident
that already acted does not act again. A file that cannot be read, or that says something the
core never writes, is set aside (renamed, logged) and the target starts afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlwatchdog.core import TargetState, from_json, state_problems, to_json
from mlwatchdog.rules.secret import Redactor


class StateStore:
    """Reads and writes `<state_dir>/<target>.json`."""

    def __init__(self, directory: str | Path, log: Any, redactor: Redactor | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.redactor = redactor if redactor is not None else Redactor()

    def path(self, target: str) -> Path:
        return self.directory / f"{target}.json"

    def load(self, target: str) -> TargetState | None:
        """The saved state, or None if there is none (or it was unusable and set aside)."""
        path = self.path(target)
        if not path.exists():
            return None
        try:
            state = from_json(TargetState, json.loads(path.read_text()))
            problems = state_problems(state, target)
        except (ValueError, TypeError, OSError) as exc:  # not JSON, or not a state
            problems = [str(exc).splitlines()[0] if str(exc) else type(exc).__name__]
        if not problems:
            return state
        aside = path.with_suffix(f".corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
        try:
            path.rename(aside)
        except OSError as exc:
            self.log.error("state file unusable and cannot be set aside", error=str(exc))
        self.log.error(
            "state file unusable; starting this target afresh",
            target=target,
            moved_to=str(aside),
            problems=problems,
        )
        return None

    def save(self, state: TargetState) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one.
        Raises OSError (disk full, too many open files): the caller keeps the state and says so."""
        path = self.path(state.target)
        tmp = path.with_suffix(".json.tmp")
        text = self.redactor.text(json.dumps(to_json(state), indent=1))
        try:
            with tmp.open("w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # no half file left behind to fill the disk
            raise
