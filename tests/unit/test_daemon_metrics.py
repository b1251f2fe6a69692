"""What /metrics says about a drift check: the test threshold it used (alpha, PSI limit) and its
effect floor apart from its drift share, per-column effect sizes; series a changed definition no
longer gives are removed; decision and action counters start at 0; build and process metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlwatchdog import __version__
from mlwatchdog.core import DataStatus, Observation, evaluate
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.detectors import Reference
from mlwatchdog.rules import Target, parse_config
from tests.unit.test_reload import rules, target

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
KS = {"name": "inputs", "type": "drift", "test": "ks", "columns": ["x", "y"], "threshold": 0.01,
      "drift_share": 0.5, "effect": {"measure": "wasserstein", "min": 0.2}}  # fmt: skip
PSI = {"name": "scores", "type": "drift", "test": "psi", "columns": ["y"], "threshold": 0.25,
       "drift_share": 1.0}  # fmt: skip


def drift_target(*checks: dict[str, Any]) -> Target:
    data = rules(
        target("m", *checks, columns={"features": {"x": "numeric", "y": "numeric"}}),
    )
    return parse_config(yaml.safe_dump(data)).target("m")


def observation(shift: float) -> Observation:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"x": rng.normal(size=2000), "y": rng.normal(size=2000)})
    window = pd.DataFrame({"x": rng.normal(shift, size=500), "y": rng.normal(size=500)})
    return Observation(
        "m", T0, window, DataStatus.OK, reference=Reference(reference),
        reference_status=DataStatus.OK,
    )  # fmt: skip


def samples(metrics: DaemonMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def named(metrics: DaemonMetrics, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples(metrics).items() if n == name}


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def test_a_drift_checks_test_threshold_and_effect_floor_are_apart_from_its_drift_share() -> None:
    watched = drift_target(KS, PSI)
    metrics = DaemonMetrics()
    metrics.record("m", evaluate(watched, observation(shift=1.0), None, T0), 0.1, T0.timestamp())

    assert named(metrics, "mlwatchdog_check_threshold") == {
        labels(target="m", check="inputs"): 0.5,
        labels(target="m", check="scores"): 1.0,
    }
    assert named(metrics, "mlwatchdog_check_test_threshold") == {
        labels(target="m", check="inputs", test="ks"): 0.01,
        labels(target="m", check="scores", test="psi"): 0.25,
    }
    assert named(metrics, "mlwatchdog_check_effect_floor") == {
        labels(target="m", check="inputs", measure="wasserstein"): 0.2,
    }
    effects = named(metrics, "mlwatchdog_drift_effect")
    assert set(effects) == {
        labels(target="m", check="inputs", column=c, measure="wasserstein") for c in ("x", "y")
    }
    # x moved by one standard deviation: its Wasserstein distance is about 1; y did not move.
    x = effects[labels(target="m", check="inputs", column="x", measure="wasserstein")]
    y = effects[labels(target="m", check="inputs", column="y", measure="wasserstein")]
    assert 0.8 < x < 1.2 and y < 0.2


def test_a_reload_removes_the_series_of_a_test_or_floor_no_longer_used() -> None:
    metrics = DaemonMetrics()
    before = drift_target(KS, PSI)
    metrics.record("m", evaluate(before, observation(shift=1.0), None, T0), 0.1, T0.timestamp())
    # A canary's per-revision check, as record() exports it during a canary.
    metrics.check_test_threshold.labels("m", "scores[canary]", "psi").set(0.25)
    # inputs now tested with PSI and without an effect floor.
    after = drift_target({**KS, "test": "psi", "threshold": 0.2, "effect": None}, PSI)
    metrics.prune(before, after)
    assert named(metrics, "mlwatchdog_check_test_threshold") == {
        labels(target="m", check="scores", test="psi"): 0.25,
        labels(target="m", check="scores[canary]", test="psi"): 0.25,  # scores is unchanged
    }
    assert named(metrics, "mlwatchdog_check_effect_floor") == {}
    assert named(metrics, "mlwatchdog_drift_effect") == {}
    metrics.record("m", evaluate(after, observation(shift=1.0), None, T0), 0.1, T0.timestamp())
    assert (
        named(metrics, "mlwatchdog_check_test_threshold")[
            labels(target="m", check="inputs", test="psi")
        ]
        == 0.2
    )


def test_decision_and_action_counters_start_at_0_so_the_first_one_is_an_increase() -> None:
    metrics = DaemonMetrics()
    metrics.expect(drift_target(KS))
    decisions = named(metrics, "mlwatchdog_decisions_total")
    assert decisions == {
        labels(target="m", kind="rollback", to="prior", dry_run="true"): 0.0,
        labels(target="m", kind="escalate", to="", dry_run=""): 0.0,
    }
    actions = named(metrics, "mlwatchdog_actions_total")
    assert {dict(k)["result"] for k in actions} == {
        "sent", "dry_run", "standby", "refused", "failed",
    }  # fmt: skip
    assert set(actions.values()) == {0.0}


def test_build_info_and_the_standard_process_metrics() -> None:
    metrics = DaemonMetrics()
    [(build, value)] = named(metrics, "mlwatchdog_build_info").items()
    assert value == 1.0 and dict(build)["version"] == __version__
    assert dict(build)["python"].count(".") == 2
    found = {name for name, _ in samples(metrics)}
    assert {"process_resident_memory_bytes", "process_open_fds", "python_info"} <= found
    assert named(metrics, "process_resident_memory_bytes")[frozenset()] > 0
