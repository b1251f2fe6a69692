"""The incident journal: one JSON line per phase change, decision and action outcome of every
target, appended to `<state_dir>/journal.jsonl`. The HTTP API lists incidents from it, and the
investigation reports show a target's state history from it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Journal:
    """Append-only JSONL; readers get whole lines only (each line is written in one call)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)

    def entries(self, target: str | None = None) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                if target is None or entry.get("target") == target:
                    yield entry


def incidents(entries: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Journal entries grouped by incident id, newest incident first."""
    by_id: dict[str, dict[str, Any]] = {}
    for entry in entries:
        incident = entry.get("incident")
        if not incident:
            continue
        record = by_id.setdefault(
            incident,
            {
                "id": incident,
                "target": entry.get("target"),
                "started_at": entry.get("at"),
                "phase": None,
                "events": [],
            },
        )
        record["events"].append(entry)
        if entry.get("kind") == "phase":
            record["phase"] = entry.get("phase")
    return sorted(by_id.values(), key=lambda r: str(r["started_at"]), reverse=True)
