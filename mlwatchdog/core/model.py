"""The core's values: what was observed, what each check found, the state carried between
evaluations, and the decisions. Plain frozen records; `to_json`/`from_json` make them files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any, TypeVar

from pydantic import TypeAdapter

from mlwatchdog.detectors import ColumnResult, Reference


class DataStatus(StrEnum):
    """Whether a check had data to judge; anything but OK can never lead to a rollback."""

    OK = "ok"
    NO_DATA = "no_data"  # the source answered, with nothing in the window
    STALE = "stale"  # the newest data is too old to speak for now
    ERROR = "error"  # the source failed (unreachable, unreadable, timed out)
    INSUFFICIENT = "insufficient"  # data, but fewer samples than the check needs


class CheckState(IntEnum):
    """A check's alerting state, ordered as in Prometheus: inactive < pending < firing."""

    INACTIVE = 0
    PENDING = 1
    FIRING = 2


class Phase(StrEnum):
    """Where a target is in its incident lifecycle."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"  # some check is pending or firing, the trigger does not hold (yet)
    ROLLING_BACK = "rolling_back"  # a rollback was decided; waiting for the actuator's outcome
    VERIFYING = "verifying"  # acted; watching whether the checks recover within verify.window
    # rollback.confirm: a rollback was decided and waits for a person's approval until a deadline
    AWAITING_APPROVAL = "awaiting_approval"
    ESCALATED = "escalated"  # needs a human: not recovered, action failed, or not allowed to act


class DecisionKind(StrEnum):
    ROLLBACK = "rollback"
    ESCALATE = "escalate"
    ASK_APPROVAL = "ask_approval"  # rollback.confirm: a rollback waits for a person's approval
    HOLD = "hold"  # what the target would have done, held by a pause or a silence (`held` says)


class Answer(StrEnum):
    """A person's answer to a rollback that waits for approval."""

    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class MetricReading:
    """One metric check's value from its source, or why there is none."""

    status: DataStatus
    value: float | None = None
    reason: str = ""


class Health(StrEnum):
    """The reverted workload's own state, read from its object while a rollback is verified."""

    HEALTHY = "healthy"  # Rollout phase Healthy on the reverted revision; ISVC Ready, traffic moved
    PROGRESSING = "progressing"  # still moving; at the end of verify.window this is not recovery
    UNHEALTHY = "unhealthy"  # degraded, not ready, or serving something else than the revert
    UNKNOWN = "unknown"  # could not be read (the API down, no access)


@dataclass(frozen=True)
class WorkloadHealth:
    status: Health
    reason: str = ""


@dataclass(frozen=True, eq=False)
class LabelledRows:
    """Performance checks' data: the predictions of the delayed window joined with the labels
    that have arrived (`rows`, a DataFrame with the label column; only matched rows), and the
    reference rows with their labels (`reference`, for CBPE's calibration; None if not read)."""

    rows: Any = None
    status: DataStatus = DataStatus.NO_DATA
    reason: str = ""
    reference: Any = None
    reference_status: DataStatus = DataStatus.NO_DATA
    reference_reason: str = ""


@dataclass(frozen=True, eq=False)
class RevisionWindows:
    """A canary in progress, and the window's rows split by the revision that served them:
    `canary_samples` and `stable_samples` are tables (DataFrames) of the same window."""

    canary: str
    stable: str
    canary_samples: Any = None
    stable_samples: Any = None


@dataclass(frozen=True, eq=False)
class Observation:
    """What the shell observed for one target at `at`: the sample window, the reference, metrics.

    `samples` is the window's table (a DataFrame) or None; `reference` the prepared Reference.
    """

    target: str
    at: datetime
    samples: Any = None
    samples_status: DataStatus = DataStatus.NO_DATA
    samples_reason: str = ""
    reference: Reference | None = None
    reference_status: DataStatus = DataStatus.NO_DATA
    reference_reason: str = ""
    metrics: Mapping[str, MetricReading] = field(default_factory=dict)
    workload: WorkloadHealth | None = None  # read while verifying; None: not read (dry-run, replay)
    # The samples' timestamp column; the rows come oldest first (sub-windows take the newest).
    time_column: str | None = None
    labels: LabelledRows | None = None  # for performance checks; None: the target has no labels
    revisions: RevisionWindows | None = None  # a canary in progress, its rows and the stable's


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict for one evaluation.

    `value` is the share of drifted columns (drift) or the metric value; `threshold` is the share
    (drift) or the limit (metric) it is compared with; `breaching` is only ever True with status
    OK. A drift check's per-column test threshold (its alpha, or PSI's limit) and effect floor
    are `test_threshold` and `effect_floor`.
    """

    check: str
    status: DataStatus
    breaching: bool = False
    value: float | None = None
    threshold: float | None = None
    reason: str = ""
    columns: tuple[ColumnResult, ...] = ()
    interval: tuple[float, float] | None = None  # performance checks: the value's interval
    test_threshold: float | None = None  # drift checks: alpha (p-value tests) or PSI's limit
    effect_floor: float | None = None  # drift checks with `effect`: its minimum


@dataclass(frozen=True)
class CheckRecord:
    """A check's state between evaluations, as timestamps (durations are derived, never counted)."""

    state: CheckState = CheckState.INACTIVE
    active_at: datetime | None = None  # when the current breach began (pending from then)
    fired_at: datetime | None = None
    last_breach_at: datetime | None = None
    resolved_at: datetime | None = None
    status: DataStatus = DataStatus.NO_DATA  # the latest evaluation's data status
    value: float | None = None


@dataclass(frozen=True)
class Confirmation:
    """A rollback waiting for a person (rollback.confirm): asked at, until when, and the answer."""

    asked_at: datetime
    deadline: datetime
    reasons: tuple[str, ...] = ()  # why the rollback was decided
    answer: Answer | None = None
    by: str | None = None  # who answered
    answered_at: datetime | None = None
    note: str = ""  # the reason they gave


@dataclass(frozen=True)
class Incident:
    """From the first active check until the target is healthy again; acts at most once."""

    id: str
    started_at: datetime
    acted_at: datetime | None = None
    escalated_at: datetime | None = None  # announced (an escalate decision); None while silenced
    reasons: tuple[str, ...] = ()
    confirmation: Confirmation | None = None  # rollback.confirm: the approval asked for
    held: tuple[DecisionKind, ...] = ()  # kinds held by a pause or silence, each recorded once


@dataclass(frozen=True)
class Hold:
    """A pause or a silence of a target, set by a person: who, when, why, until when (None:
    until resumed). It holds at `now` while `until` is None or later than `now`."""

    by: str
    at: datetime
    until: datetime | None = None
    reason: str = ""

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True)
class TargetState:
    """Everything the next evaluation of a target needs; persisted between evaluations."""

    target: str
    phase: Phase = Phase.HEALTHY
    since: datetime | None = None
    checks: Mapping[str, CheckRecord] = field(default_factory=dict)
    incident: Incident | None = None
    last_action_at: datetime | None = None
    verify_until: datetime | None = None
    quiet_since: datetime | None = None  # no check active since then (for the resolve delay)
    evaluated_at: datetime | None = None
    paused: Hold | None = None  # evaluated and reported, but takes no action
    silenced: Hold | None = None  # no action and no escalation; always has an end (`until`)


@dataclass(frozen=True)
class Decision:
    """Something to do, and why: roll back (to prior or fallback) or escalate to a human."""

    kind: DecisionKind
    target: str
    incident: str
    at: datetime
    reasons: tuple[str, ...]
    to: str | None = None  # "prior" or "fallback", for a rollback
    dry_run: bool = True
    held: DecisionKind | None = None  # for a hold: the decision held (rollback, escalate, ...)
    deadline: datetime | None = None  # for ask_approval: when on_timeout applies
    scope: str | None = None  # "canary": only canary checks hold the trigger; abort it only


@dataclass(frozen=True)
class ActionOutcome:
    """What the actuator reports back about a rollback decision."""

    incident: str
    ok: bool
    dry_run: bool
    detail: str = ""
    refused: bool = False  # the policy did not allow the candidate; nothing was sent
    standby: bool = False  # not the leader: another replica acts, this one only follows


T = TypeVar("T")


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    # Building an adapter costs milliseconds, and the state is saved on every evaluation.
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def to_json(value: Any) -> Any:
    """A core value as JSON-compatible data (datetimes as ISO strings)."""
    return _adapter(type(value)).dump_python(value, mode="json")


def from_json(kind: type[T], data: Any) -> T:
    """The core value of type `kind` that `to_json` produced."""
    result: T = _adapter(kind).validate_python(data)
    return result
