"""Workload drivers, one per `workload.kind` (`base.WorkloadDriver`), and their registry.

Adding a kind: a module here with its driver, an entry in `DRIVERS`, the kind in
`rules.schema.WORKLOAD_KINDS`, and its tests (tests/unit/test_workload_drivers.py checks that
the two lists agree).
"""

from __future__ import annotations

from mlwatchdog.actions.workloads.argo import ArgoRolloutDriver
from mlwatchdog.actions.workloads.base import Read, WorkloadDriver
from mlwatchdog.actions.workloads.deployment import DeploymentDriver
from mlwatchdog.actions.workloads.flagger import FlaggerCanaryDriver
from mlwatchdog.actions.workloads.kserve import KServeDriver
from mlwatchdog.errors import ActionError

DRIVERS: dict[str, WorkloadDriver] = {
    driver.kind: driver
    for driver in (
        ArgoRolloutDriver(),
        KServeDriver(),
        DeploymentDriver(),
        FlaggerCanaryDriver(),
    )
}


def driver_for(kind: str) -> WorkloadDriver:
    """The driver of `kind`; an unknown kind is an error, never another kind's driver."""
    try:
        return DRIVERS[kind]
    except KeyError:
        raise ActionError(
            f"no workload driver for kind {kind!r} (known: {', '.join(sorted(DRIVERS))})"
        ) from None


__all__ = ["DRIVERS", "Read", "WorkloadDriver", "driver_for"]
