"""One driver per workload kind, chosen from a registry: every kind rules.yaml accepts has its
own driver, and a kind without one is an error, never another kind's code path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import structlog

from mlwatchdog.actions.dryrun import DryRunActuator
from mlwatchdog.actions.workloads import DRIVERS, driver_for
from mlwatchdog.core import Decision, DecisionKind
from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import WORKLOAD_KINDS
from tests.kube.targets import kube_target


def test_every_kind_rules_yaml_accepts_has_its_own_driver() -> None:
    assert set(DRIVERS) == set(WORKLOAD_KINDS) - {"none"}
    assert all(driver.kind == kind for kind, driver in DRIVERS.items())


def test_an_unknown_kind_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(ActionError, match=r"no workload driver for kind 'deploymnet' \(known: "):
        driver_for("deploymnet")


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_each_driver_plans_offline_on_its_own_object(kind: str) -> None:
    target = kube_target(kind)
    driver = driver_for(kind)
    decision = Decision(
        DecisionKind.ROLLBACK, target.name, "fraud-1", datetime.now(UTC), ("drift",), to="prior"
    )
    plan = driver.offline_plan(target, decision)
    # Flagger rolls a Canary back itself (its rollback webhook asks the daemon): nothing to send.
    assert plan.requests or (kind == "flagger-canary" and plan.done), kind
    own = driver.path(target)
    assert all(r.path.startswith(own) for r in plan.requests), [r.path for r in plan.requests]
    other_paths = [d.path(target) for k, d in DRIVERS.items() if k != kind]
    assert own not in other_paths


def test_offline_dry_run_of_a_target_without_workload_sends_nothing() -> None:
    target = kube_target("none")
    decision = Decision(
        DecisionKind.ROLLBACK, target.name, "fraud-1", datetime.now(UTC), ("drift",), to="prior"
    )
    outcome = DryRunActuator(structlog.get_logger()).rollback(target, decision)
    assert outcome.ok and outcome.dry_run
    assert "0 request(s)" in outcome.detail
