"""Replay: the daemon's decisions re-run offline over history with a virtual clock."""

from mlwatchdog.replay.timeline import TIMELINE_COLUMNS, replay, replay_step, step_times

__all__ = ["TIMELINE_COLUMNS", "replay", "replay_step", "step_times"]
