"""The shipped rules' error-rate checks, one per common model-metric convention, read by the
daemon's Prometheus reader from a real Prometheus scraping a model's counters:

- a `status` label on the request counter (`model_prediction_requests_total{status="error"}`):
  the fraud target of deploy/kustomize/base/rules.yaml;
- an error counter by error type beside the request counter
  (`model_prediction_errors_total{error_type=...}`): the credit target of the production overlay
  (and of deploy/examples/kserve-inferenceservice.yaml).

Before the model's first error there is no error series at all: each check reads 0 (not "no
data", which would hold its state and fire MlwatchdogCheckWithoutData). Then each reads the share
of requests that failed, and the errors the caller caused (error_type invalid_input) are not the
model's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter

from mlwatchdog.core import DataStatus, MetricReading
from mlwatchdog.rules import Config, MetricCheck, PrometheusSource, Target, load_config
from mlwatchdog.sources.prometheus import PrometheusReader
from tests.deploy.manifests import BASE, PRODUCTION, one, render
from tests.deploy.test_rules_check import secret_env
from tests.servers.prometheus import exporter, running_prometheus

pytestmark = pytest.mark.timeout(120)


def shipped(directory: Path, prometheus_url: str, tmp_path: Path) -> Config:
    """The rules.yaml the kustomization ships, its `prometheus` source pointed at ours."""
    objs = render(directory)
    rules: dict[str, Any] = yaml.safe_load(one(objs, "ConfigMap")["data"]["rules.yaml"])
    rules["sources"]["prometheus"]["url"] = prometheus_url
    path = tmp_path / f"{directory.name}-rules.yaml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return load_config(path, env=secret_env(objs))


def error_rate(target: Target) -> MetricCheck:
    [check] = [c for c in target.checks if c.name == "error_rate"]
    assert isinstance(check, MetricCheck)
    return check


def test_both_conventions_read_0_before_the_first_error_then_the_models_error_share(
    tmp_path: Path,
) -> None:
    with exporter() as model, running_prometheus(scrape=[model.address]) as prometheus:
        base = shipped(BASE, prometheus.url, tmp_path)
        fraud = base.target("fraud")
        credit = shipped(PRODUCTION, prometheus.url, tmp_path).target("credit")
        assert "status=" in error_rate(fraud).query
        assert "model_prediction_errors_total" in error_rate(credit).query
        source = base.sources["prometheus"]
        assert isinstance(source, PrometheusSource)
        reader = PrometheusReader("prometheus", source)

        requests = Counter(
            "model_prediction_requests",
            "Requests by status",
            ["namespace", "model", "status"],
            registry=model.registry,
        )
        errors = Counter(
            "model_prediction_errors",
            "Errors by type",
            ["namespace", "model", "error_type"],
            registry=model.registry,
        )

        def serve(ok: int, failed: dict[str, int]) -> None:
            """One tick of traffic to both models: fraud counts errors in `status`, credit in
            its error counter (by type); both count every request."""
            ws = fraud.workload
            requests.labels(ws.namespace, ws.name, "ok").inc(ok)
            if failed:
                requests.labels(ws.namespace, ws.name, "error").inc(sum(failed.values()))
            wc = credit.workload
            requests.labels(wc.namespace, wc.name, "ok").inc(ok + sum(failed.values()))
            for kind, n in failed.items():
                errors.labels(wc.namespace, wc.name, kind).inc(n)

        def reading(target: Target) -> MetricReading:
            return reader.instant(error_rate(target), target, datetime.now(UTC))

        def until(what: str, ok: Callable[[], bool], traffic: Callable[[], None]) -> None:
            deadline = time.monotonic() + 60
            while not ok():
                assert time.monotonic() < deadline, f"never {what}"
                traffic()
                time.sleep(0.2)

        # No error yet: no error series exists, and both checks read 0 (with data).
        quiet = (reading(fraud), reading(credit))
        until(
            "a reading without errors",
            lambda: all(r.status is DataStatus.OK for r in (reading(fraud), reading(credit))),
            lambda: serve(100, {}),
        )
        assert quiet[0].status is not DataStatus.OK  # before any traffic: no data, honestly
        assert reading(fraud).value == 0.0 and reading(credit).value == 0.0
        assert reading(fraud).status is DataStatus.OK

        # 5% of requests fail in the model (timeouts); credit's callers also send 10% invalid
        # input, which is their error, not the model's.
        def failing() -> None:
            serve(85, {"timeout": 5, "invalid_input": 10})

        def breaching(target: Target, limit: float) -> bool:
            found = reading(target)
            return found.value is not None and found.value > limit

        until("fraud above its limit", lambda: breaching(fraud, 0.1), failing)
        until("credit above its limit", lambda: breaching(credit, 0.02), failing)
        for _ in range(10):  # a few more scrapes of steady traffic
            failing()
            time.sleep(0.3)
        fraud_value, credit_value = reading(fraud).value, reading(credit).value
        assert fraud_value is not None and credit_value is not None
        # fraud counts every failed request in `status`: invalid input included (15%).
        assert error_rate(fraud).above is not None and fraud_value > error_rate(fraud).above
        assert 0.03 < credit_value < 0.08, credit_value  # the timeouts only, about 5%
