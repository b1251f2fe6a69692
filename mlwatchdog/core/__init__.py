"""The decision core: pure functions from observations and state to new state and decisions.

No I/O and no clock: `now` is always given. The daemon and replay call the same functions, so the
same inputs give the same decisions.
"""

from mlwatchdog.core.checks import step
from mlwatchdog.core.consistency import state_problems
from mlwatchdog.core.decide import Evaluation, decide, evaluate, record_action
from mlwatchdog.core.measure import CANARY, CANARY_VS_STABLE, base_check, measure, revision_check
from mlwatchdog.core.model import (
    ActionOutcome,
    Answer,
    CheckRecord,
    CheckResult,
    CheckState,
    Confirmation,
    DataStatus,
    Decision,
    DecisionKind,
    Health,
    Hold,
    Incident,
    LabelledRows,
    MetricReading,
    Observation,
    Phase,
    RevisionWindows,
    TargetState,
    WorkloadHealth,
    from_json,
    to_json,
)
from mlwatchdog.core.takeover import adopted

__all__ = [
    "CANARY",
    "CANARY_VS_STABLE",
    "ActionOutcome",
    "Answer",
    "CheckRecord",
    "CheckResult",
    "CheckState",
    "Confirmation",
    "DataStatus",
    "Decision",
    "DecisionKind",
    "Evaluation",
    "Health",
    "Hold",
    "Incident",
    "LabelledRows",
    "MetricReading",
    "Observation",
    "Phase",
    "RevisionWindows",
    "TargetState",
    "WorkloadHealth",
    "adopted",
    "base_check",
    "decide",
    "evaluate",
    "from_json",
    "measure",
    "record_action",
    "revision_check",
    "state_problems",
    "step",
    "to_json",
]
