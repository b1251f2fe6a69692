"""Fixtures of the fault-injection tests: the end-to-end daemon harness's (daemon processes, the
live-sample feeder), and an incident bundle to write again and again."""

from __future__ import annotations

import pytest

from mlwatchdog.replay import list_bundles
from tests.e2e.daemon_process import feeder, processes
from tests.integration.bundle_scenario import run_incident

__all__ = ["feeder", "processes", "rollback_bundle"]


@pytest.fixture(scope="session")
def rollback_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The rollback decision's bundle of an incident the daemon's runner recorded."""
    folder = tmp_path_factory.mktemp("incident")
    run_incident(folder)
    [found] = [b for b in list_bundles(str(folder / "bundles")) if b.endswith("decision-rollback")]
    return found
