"""The incident journal: one JSON line per phase change, decision and action outcome of every
target, appended to `<state_dir>/journal.jsonl` (`JsonLines`: torn lines skipped, a failed write
kept and retried). The HTTP API lists incidents from it, and the investigation reports show a
target's state history from it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlwatchdog.jsonlines import JsonLines


class Journal(JsonLines):
    """The journal file; `entries(match)` and `tail(match, limit)` read it."""


def for_target(target: str | None) -> Any:
    """A `match` for the records of one target (all of them for None)."""
    return None if target is None else (lambda record: record.get("target") == target)


def incidents(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
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
