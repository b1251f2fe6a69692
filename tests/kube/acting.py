"""What the action tests share: the clock, a rollback decision and the real actuator on the fake
API server (the `api` and `audit` fixtures are in tests/integration/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from mlwatchdog.actions.actuator import KubeActuator
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.core import Decision, DecisionKind
from mlwatchdog.rules import Target
from tests.kube.apiserver import FakeKubeAPI

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
INCIDENT = "fraud-20261125T115500Z"
REASON = "drift fired: 3 of 4 columns drifted"


def decision(target: Target, incident: str = INCIDENT) -> Decision:
    """The rollback the core decides for `target` at NOW."""
    return Decision(
        DecisionKind.ROLLBACK, target.name, incident, NOW, (REASON,),
        to=target.rollback.to, dry_run=target.rollback.dry_run,
    )  # fmt: skip


def actuator(api: FakeKubeAPI, audit: AuditLog, attempts: int = 3, **kwargs: Any) -> KubeActuator:
    """The real actuator on the real kubernetes client, talking to `api`; retries do not sleep."""
    kube = KubeApi(api.api_client(), timeout=5, attempts=attempts, sleep=lambda s: None)
    return KubeActuator(
        kube, audit, structlog.get_logger(), "mlwatchdog-0", clock=lambda: NOW, **kwargs
    )
