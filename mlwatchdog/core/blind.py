"""Blindness: whether a target's drift checks have had their inputs missing for longer than the
window, so the monitor judges nothing. Pure; the runner calls `blindness` after each observation.

A sample window or reference that is missing (no data, stale, or its source failing) makes every
drift check "no data", which never rolls back: safe, but silent. Missing once is normal (a late
batch, a network blip: the next windows re-read the same rows); missing for longer than the
samples window means rows came and went without ever being tested, and somebody should look.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mlwatchdog.core.model import DataStatus, Observation
from mlwatchdog.rules import DriftCheck, Target

# What counts as missing. INSUFFICIENT does not: the source answered with rows, too few to test
# this time (a quiet hour); the checks say so in their own data status, and the next busier
# window is tested. It is a question of traffic, not of sight.
MISSING = frozenset({DataStatus.NO_DATA, DataStatus.STALE, DataStatus.ERROR})


@dataclass(frozen=True)
class Missing:
    """One input missing since `since` (the first evaluation that found it so), and why, as the
    source said at the latest evaluation."""

    since: datetime
    status: DataStatus
    reason: str = ""

    def describe(self, what: str) -> str:
        return f"{what} ({self.status}): {self.reason or 'no reason given'}"


@dataclass(frozen=True)
class Blindness:
    """What a target's drift checks have been missing, since when, and whether it is blind:
    `since` (while blind) is when the longest-missing input that blinds it went missing."""

    samples: Missing | None = None
    reference: Missing | None = None
    blind: bool = False
    since: datetime | None = None
    reason: str = ""  # while blind: what is missing and why ("samples (no_data): no files ...")


def blindness(
    target: Target, observation: Observation, previous: Blindness, now: datetime
) -> Blindness:
    """The record after `observation` at `now`: blind once the samples or the reference have
    been missing for longer than `target.samples.window`. Only drift checks read them: a target
    without one is never blind (metric checks report their data status one by one)."""
    if not any(isinstance(c, DriftCheck) for c in target.checks):
        return Blindness()
    samples = _missing(
        previous.samples, observation.samples_status, observation.samples_reason, now
    )
    reference = _missing(
        previous.reference, observation.reference_status, observation.reference_reason, now
    )
    window = target.samples.window
    blinding = [
        (what, missing)
        for what, missing in (("samples", samples), ("reference", reference))
        if missing is not None and now - missing.since > window
    ]
    if not blinding:
        return Blindness(samples, reference)
    return Blindness(
        samples,
        reference,
        blind=True,
        since=min(missing.since for _, missing in blinding),
        reason="; ".join(missing.describe(what) for what, missing in blinding),
    )


def _missing(
    previous: Missing | None, status: DataStatus, reason: str, now: datetime
) -> Missing | None:
    if status not in MISSING:
        return None
    return Missing(previous.since if previous is not None else now, status, reason)
