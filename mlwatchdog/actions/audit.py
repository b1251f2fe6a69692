"""The audit log: one JSON record per action, dry-run, skip, refusal or failure, written durably.

Who, what, why, and the object before and after. A local file of JSON lines (fsynced before the
action's outcome is reported; read it with `jq` or pandas.read_json(lines=True)), or any fsspec
URL (one object per record), so the trail can outlive the pod. A record that cannot be written
now is kept and written once the fault is gone (`JsonLines`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from mlwatchdog.jsonlines import JsonLines
from mlwatchdog.rules.secret import Redactor


class AuditLog(JsonLines):
    """The audit trail at `location` (a path or an fsspec URL)."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        redactor: Redactor | None = None,
        on_fault: Callable[[str | None], None] = lambda _: None,
    ) -> None:
        super().__init__(
            location,
            durable=True,
            storage_options=storage_options,
            redactor=redactor,
            on_fault=on_fault,
        )
