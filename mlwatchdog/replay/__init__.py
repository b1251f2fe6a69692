"""Replay: the daemon's decisions re-run offline, over history with a virtual clock, or from
incident bundles (bit for bit, or with changed settings: what if)."""

from mlwatchdog.replay.bundle import (
    Bundle,
    BundleError,
    BundleWriter,
    Recorded,
    Replayed,
    changed_target,
    iter_bundles,
    list_bundles,
    load_bundle,
    parse_changes,
    replay_recorded,
)
from mlwatchdog.replay.timeline import (
    TIMELINE_COLUMNS,
    AlarmRate,
    alarm_rates,
    replay,
    replay_decide,
    replay_step,
    step_times,
)

__all__ = [
    "TIMELINE_COLUMNS",
    "AlarmRate",
    "Bundle",
    "BundleError",
    "BundleWriter",
    "Recorded",
    "Replayed",
    "alarm_rates",
    "changed_target",
    "iter_bundles",
    "list_bundles",
    "load_bundle",
    "parse_changes",
    "replay",
    "replay_decide",
    "replay_recorded",
    "replay_step",
    "step_times",
]
