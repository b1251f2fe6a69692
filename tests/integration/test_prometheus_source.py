"""The Prometheus source against a real Prometheus: hours of known history backfilled with
promtool, queried at explicit past times; a live exporter it scrapes; failures of every kind.

Expected values are computed here from the samples written (rates as increase / 300 s, p95 with
histogram_quantile's linear interpolation), never read back from Prometheus.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client import Gauge

from mlwatchdog.core import DataStatus, MetricReading
from mlwatchdog.errors import InputError
from mlwatchdog.replay.timeline import replay
from mlwatchdog.rules import MetricCheck, PrometheusSource, Target, parse_config
from mlwatchdog.sources.prometheus import PrometheusReader
from tests.servers.prometheus import (
    CannedApi,
    Exporter,
    OpenMetrics,
    PrometheusServer,
    canned_api,
    exporter,
    prometheus_with_history,
    running_prometheus,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # 2h-aligned, so promtool's blocks start at T0
END = T0 + timedelta(hours=4)
SCRAPE = 15  # seconds between samples
ERRORS_AT = T0 + timedelta(hours=2)  # the error share goes from 1% to 5%
LATENCY_AT = T0 + timedelta(hours=2, minutes=30)  # p95 from ~0.14 s to ~0.48 s
ACCURACY_AT = T0 + timedelta(hours=3)  # credit's accuracy from 0.91 to 0.80
BATCH_UNTIL = T0 + timedelta(hours=1)  # the batch gauge has no samples after this

# Per-scrape increments (before, after the change) of the request counters and latency buckets.
REQUESTS = {"200": (148.5, 142.5), "500": (1.5, 7.5)}
BUCKETS = {
    "0.05": (90, 30), "0.1": (140, 60), "0.25": (149, 120),
    "0.5": (150, 145), "1.0": (150, 150), "+Inf": (150, 150),
}  # fmt: skip

ERROR_SHARE = (
    'sum(rate(http_requests_total{model="$target",code="500"}[5m]))'
    ' / sum(rate(http_requests_total{model="$target"}[5m]))'
)
P95 = 'histogram_quantile(0.95, sum by (le) (rate(request_duration_seconds_bucket{model="$target"}[5m])))'  # noqa: E501
ACCURACY = 'model_accuracy{model="$target"}'

Key = tuple[str, tuple[tuple[str, str], ...]]


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


STAMPS = range(_epoch(T0), _epoch(END) + 1, SCRAPE)


def _counter(before: float, after: float, switch: datetime) -> dict[int, float]:
    """A counter from 1000 growing by `before` per scrape, by `after` from `switch` on."""
    values, total = {}, 1000.0
    for stamp in STAMPS:
        if stamp > STAMPS[0]:
            total += after if stamp > _epoch(switch) else before
        values[stamp] = total
    return values


def _history() -> dict[Key, dict[int, float]]:
    series: dict[Key, dict[int, float]] = {}
    for code, (before, after) in REQUESTS.items():
        key = ("http_requests_total", (("model", "credit"), ("code", code)))
        series[key] = _counter(before, after, ERRORS_AT)
    for le, (before, after) in BUCKETS.items():
        key = ("request_duration_seconds_bucket", (("model", "credit"), ("le", le)))
        series[key] = _counter(before, after, LATENCY_AT)
    credit = {s: 0.80 if s >= _epoch(ACCURACY_AT) else 0.91 for s in STAMPS}
    series[("model_accuracy", (("model", "credit"),))] = credit
    series[("model_accuracy", (("model", "fraud"),))] = dict.fromkeys(STAMPS, 0.95)
    batch = {s: 1.0 for s in STAMPS if s <= _epoch(BATCH_UNTIL)}
    series[("batch_last_success", (("job", "nightly"),))] = batch
    return series


HISTORY = _history()
TYPES = {
    "http_requests_total": ("http_requests", "counter"),
    "request_duration_seconds_bucket": ("request_duration_seconds", "histogram"),
    "model_accuracy": ("model_accuracy", "gauge"),
    "batch_last_success": ("batch_last_success", "gauge"),
}


def history_text() -> str:
    text = OpenMetrics()
    for name, (family, kind) in TYPES.items():
        text.family(family, kind)
        for (series_name, labels), values in HISTORY.items():
            if series_name == name:
                text.series(name, dict(labels), values.items())
    return text.text()


def rate(name: str, at: datetime, **labels: str) -> float:
    """Per-second increase over [at - 5m, at]; `at` on a sample, so nothing is extrapolated."""
    values = HISTORY[(name, tuple(labels.items()))]
    return (values[_epoch(at)] - values[_epoch(at) - 300]) / 300


def error_share(at: datetime) -> float:
    errors = rate("http_requests_total", at, model="credit", code="500")
    return errors / (errors + rate("http_requests_total", at, model="credit", code="200"))


def p95(at: datetime) -> float:
    """histogram_quantile(0.95, ...): linear interpolation inside the bucket holding the rank."""
    bounds = [float(le) for le in BUCKETS]
    counts = [rate("request_duration_seconds_bucket", at, model="credit", le=le) for le in BUCKETS]
    rank = 0.95 * counts[-1]
    i = next(i for i, count in enumerate(counts) if count >= rank)
    if bounds[i] == float("inf"):
        return bounds[i - 1]
    lower, below = (bounds[i - 1], counts[i - 1]) if i else (0.0, 0.0)
    return lower + (bounds[i] - lower) * (rank - below) / (counts[i] - below)


def accuracy(at: datetime) -> float:
    return HISTORY[("model_accuracy", (("model", "credit"),))][_epoch(at)]


# -------------------------------------------------------------------------------------- helpers


def target(name: str = "credit", workload: dict[str, str] | None = None) -> Target:
    return Target.model_validate(
        {
            "name": name,
            "workload": workload or {"kind": "none"},
            "samples": {"source": "samples"},
            "reference": {"source": "samples"},
            "columns": {"features": {"x": "numeric"}},
            "checks": [{"name": "always", "type": "drift", "test": "ks"}],
        }
    )


def check(query: str, **extra: Any) -> MetricCheck:
    return MetricCheck.model_validate(
        {"name": "m", "type": "metric", "source": "prom", "query": query, "above": 0, **extra}
    )


def reader(url: str, **spec: Any) -> PrometheusReader:
    return PrometheusReader(
        "prom", PrometheusSource.model_validate({"type": "prometheus", "url": url, **spec})
    )


@pytest.fixture(scope="module")
def history() -> Iterator[PrometheusServer]:
    with prometheus_with_history(history_text()) as server:
        yield server


@pytest.fixture(scope="module")
def prom(history: PrometheusServer) -> PrometheusReader:
    return reader(history.url, timeout="5s")


@pytest.fixture(scope="module")
def metrics_exporter() -> Iterator[Exporter]:
    with exporter() as running:
        yield running


@pytest.fixture(scope="module")
def live_prometheus(metrics_exporter: Exporter) -> Iterator[PrometheusServer]:
    """A Prometheus scraping the exporter every second."""
    with running_prometheus(scrape=[metrics_exporter.address]) as server:
        yield server


@pytest.fixture
def canned() -> Iterator[CannedApi]:
    with canned_api() as api:
        yield api


def read(prom: PrometheusReader, query: str, at: datetime, **extra: Any) -> MetricReading:
    return prom.instant(check(query, **extra), target(), at)


# ------------------------------------------------------------------------------ instant queries


# Around the change at ERRORS_AT, where the 5m rates move the share from 1% to 5% over 5 minutes.
@pytest.mark.parametrize("minutes", [-60, 0, 1, 2, 3, 5, 10, 90])
def test_error_share_at_historical_times_matches_the_written_counters(
    prom: PrometheusReader, minutes: int
) -> None:
    at = ERRORS_AT + timedelta(minutes=minutes)
    got = read(prom, ERROR_SHARE, at)
    assert got.status is DataStatus.OK, got.reason
    assert got.value == pytest.approx(error_share(at), rel=1e-9)


def test_error_share_before_and_after_the_change() -> None:
    assert error_share(ERRORS_AT) == pytest.approx(0.01)
    assert (
        error_share(ERRORS_AT + timedelta(minutes=1))
        < 0.02
        < error_share(ERRORS_AT + timedelta(minutes=2))
    )
    assert error_share(ERRORS_AT + timedelta(minutes=5)) == pytest.approx(0.05)


@pytest.mark.parametrize("minutes", [-30, 1, 2, 3, 4, 30])
def test_p95_latency_from_histogram_buckets(prom: PrometheusReader, minutes: int) -> None:
    at = LATENCY_AT + timedelta(minutes=minutes)
    got = read(prom, P95, at)
    assert got.status is DataStatus.OK, got.reason
    assert got.value == pytest.approx(p95(at), rel=1e-9)


def test_gauge_scalar_and_target_templating(prom: PrometheusReader) -> None:
    before, after = ACCURACY_AT - timedelta(seconds=1), ACCURACY_AT
    assert read(prom, ACCURACY, before) == MetricReading(DataStatus.OK, 0.91)
    assert read(prom, ACCURACY, after) == MetricReading(DataStatus.OK, 0.80)
    scalar = read(prom, "scalar(model_accuracy{model='$target'}) * 100", after)
    assert scalar.status is DataStatus.OK and scalar.value == pytest.approx(80.0)
    fraud = prom.instant(check(ACCURACY), target("fraud"), after)
    assert fraud == MetricReading(DataStatus.OK, 0.95)


def test_several_series_are_an_error_naming_them_unless_labels_select_one(
    prom: PrometheusReader,
) -> None:
    at = T0 + timedelta(hours=1)
    several = read(prom, "model_accuracy", at)
    assert several.status is DataStatus.ERROR
    assert several.reason == (
        'query returned 2 series (model_accuracy{model="credit"}, model_accuracy{model="fraud"}); '
        "aggregate with sum()/max() or match `labels:`"
    )
    assert read(prom, "model_accuracy", at, labels={"model": "fraud"}).value == 0.95
    assert read(prom, "model_accuracy", at, labels={"model": "$target"}).value == 0.91
    by_code = 'sum by (code) (rate(http_requests_total{model="$target"}[5m]))'
    errors = read(prom, by_code, at, labels={"code": "500"})
    assert errors.status is DataStatus.OK and errors.value == pytest.approx(1.5 / SCRAPE)
    missing = read(prom, by_code, at, labels={"code": "404"})
    assert missing.status is DataStatus.NO_DATA
    assert 'none of the 2 series has labels {code="404"}' in missing.reason


def test_no_series_nan_and_the_lookback_give_no_data(prom: PrometheusReader) -> None:
    at = T0 + timedelta(hours=1)
    empty = read(prom, 'model_accuracy{model="nope"}', at)
    assert empty == MetricReading(DataStatus.NO_DATA, reason="query returned no series")
    nan = read(prom, "scalar(model_accuracy)", at)  # scalar() of two series is NaN
    assert nan.status is DataStatus.NO_DATA and "NaN" in nan.reason
    # Prometheus' 5 minute lookback: a series whose last sample is older is simply not returned.
    batch = "batch_last_success"
    assert read(prom, batch, BATCH_UNTIL + timedelta(minutes=4)).status is DataStatus.OK
    assert read(prom, batch, BATCH_UNTIL + timedelta(minutes=6)).status is DataStatus.NO_DATA


def test_query_errors_carry_prometheus_message(prom: PrometheusReader) -> None:
    at = T0 + timedelta(hours=1)
    syntax = read(prom, "sum(rate(http_requests_total[5m])", at)
    assert syntax.status is DataStatus.ERROR
    assert syntax.reason.startswith("HTTP 400: bad_data: invalid parameter")
    assert "parse error: unclosed left parenthesis" in syntax.reason
    matrix = read(prom, "model_accuracy[5m]", at)
    assert matrix.status is DataStatus.ERROR and "range vector" in matrix.reason
    text = read(prom, '"hello"', at)
    assert text == MetricReading(DataStatus.ERROR, reason="query returned 'hello', not a number")
    no_workload = read(prom, 'up{deployment="$workload"}', at)
    assert no_workload.status is DataStatus.ERROR and "no workload" in no_workload.reason


def test_range_gives_a_time_indexed_series(prom: PrometheusReader) -> None:
    start, end = ERRORS_AT - timedelta(minutes=3), ERRORS_AT + timedelta(minutes=6)
    got = prom.range(check(ERROR_SHARE), target(), start, end, timedelta(minutes=1))
    times = pd.date_range(start, end, freq="1min")
    assert list(got.index) == list(times)
    assert got.tolist() == pytest.approx([error_share(t) for t in times], rel=1e-9)
    empty = prom.range(
        check('model_accuracy{model="nope"}'), target(), start, end, timedelta(minutes=1)
    )
    assert empty.empty and str(pd.DatetimeIndex(empty.index).tz) == "UTC"
    with pytest.raises(InputError, match="returned 2 series"):
        prom.range(check("model_accuracy"), target(), start, end, timedelta(minutes=1))
    with pytest.raises(InputError, match="parse error"):
        prom.range(check("sum("), target(), start, end, timedelta(minutes=1))


# ------------------------------------------------------------------------ live and failures


def test_live_exporter_value(metrics_exporter: Exporter, live_prometheus: PrometheusServer) -> None:
    gauge = Gauge("model_accuracy", "test", ["model"], registry=metrics_exporter.registry)
    live = reader(live_prometheus.url)
    for value in (0.7, 0.93):
        gauge.labels(model="live").set(value)
        live_prometheus.wait_for('model_accuracy{model="live"}', value)
        got = live.instant(check(ACCURACY), target("live"), datetime.now(UTC))
        assert got == MetricReading(DataStatus.OK, value)


def test_prometheus_down_is_an_error_within_the_timeout() -> None:
    with running_prometheus() as server:
        down = reader(server.url, timeout="2s")
        assert read(down, "vector(1)", datetime.now(UTC)) == MetricReading(DataStatus.OK, 1.0)
        server.stop()
        started = time.monotonic()
        got = read(down, "vector(1)", datetime.now(UTC))
    assert time.monotonic() - started < 2
    assert got == MetricReading(
        DataStatus.ERROR, reason=f"cannot reach {server.url}: Connection refused"
    )


def test_a_hung_server_times_out(canned: CannedApi) -> None:
    canned.respond({"status": "success", "data": {"resultType": "scalar", "result": []}}, delay=3)
    started = time.monotonic()
    got = read(reader(canned.url, timeout="0.5s"), "vector(1)", datetime.now(UTC))
    assert time.monotonic() - started < 2
    assert got == MetricReading(DataStatus.ERROR, reason=f"no answer from {canned.url} within 0.5s")


def test_auth_headers_evaluation_time_and_rendered_query_are_sent(canned: CannedApi) -> None:
    at = T0 + timedelta(hours=1, seconds=0.5)
    query = 'up{model="$target", namespace="$namespace", deployment="$workload"}'
    api = reader(canned.url, bearer_token="s3cret", headers={"X-Scope-OrgID": "team-a"})
    api.instant(
        check(query),
        target(workload={"kind": "argo-rollout", "name": "credit-api", "namespace": "ml"}),
        at,
    )
    sent = canned.received[-1]
    assert sent.path == "/api/v1/query"
    assert sent.params["query"] == 'up{model="credit", namespace="ml", deployment="credit-api"}'
    assert float(sent.params["time"]) == at.timestamp()
    assert sent.headers["Authorization"] == "Bearer s3cret"
    assert sent.headers["X-Scope-OrgID"] == "team-a"
    basic = reader(canned.url, username="watchdog", password="pw")
    read(basic, "vector(1)", at)
    token = base64.b64encode(b"watchdog:pw").decode()
    assert canned.received[-1].headers["Authorization"] == f"Basic {token}"


def test_answers_prometheus_does_not_give(canned: CannedApi) -> None:
    at = T0 + timedelta(hours=1)
    api = reader(canned.url)

    def vector(stamp: float) -> dict[str, Any]:
        series = {"metric": {}, "value": [stamp, "0.5"]}
        return {"status": "success", "data": {"resultType": "vector", "result": [series]}}

    canned.respond(vector(at.timestamp() - 300))
    assert read(api, "x", at) == MetricReading(DataStatus.OK, 0.5)
    canned.respond(vector(at.timestamp() - 600))  # e.g. a server that ignored `time`
    stale = read(api, "x", at)
    assert stale.status is DataStatus.STALE and "600s before" in stale.reason
    canned.respond("<html>proxy login</html>")
    assert read(api, "x", at) == MetricReading(
        DataStatus.ERROR, reason=f"{canned.url} did not answer with Prometheus API JSON"
    )
    canned.respond("<html>Bad Gateway</html>", status=502)
    assert read(api, "x", at).reason == "HTTP 502: <html>Bad Gateway</html>"
    canned.respond({"status": "error", "errorType": "execution", "error": "boom"}, status=422)
    assert read(api, "x", at).reason == "HTTP 422: execution: boom"
    canned.respond({"status": "success", "data": {"result": [{"metric": {}, "value": []}]}})
    malformed = read(api, "x", at)
    assert malformed.status is DataStatus.ERROR and "unexpected answer" in malformed.reason


# --------------------------------------------------------------------------------- core replay

RULES = """
sources:
  prom: {{type: prometheus, url: "{url}", timeout: 5s}}
  samples: {{type: files, url: "{samples}", timestamp_column: null}}
targets:
  - name: credit
    workload: {{kind: argo-rollout, name: credit-api, namespace: ml}}
    samples: {{source: samples}}
    reference: {{source: samples}}
    columns: {{features: {{x: numeric}}}}
    for: 5m
    checks:
      - {{name: error_rate, type: metric, source: prom, above: 0.02, query: '{errors}'}}
      - {{name: latency_p95, type: metric, source: prom, above: 0.2, query: '{p95}'}}
      - {{name: accuracy, type: metric, source: prom, below: 0.85, for: 10m, query: '{acc}'}}
"""


def test_replay_over_the_history_pends_then_fires_at_the_expected_times(
    history: PrometheusServer, tmp_path: Path
) -> None:
    samples = tmp_path / "samples.parquet"
    pd.DataFrame({"x": [1.0, 2.0, 3.0]}).to_parquet(samples)
    text = RULES.format(url=history.url, samples=samples, errors=ERROR_SHARE, p95=P95, acc=ACCURACY)
    config = parse_config(text, env={})
    start, end = ERRORS_AT - timedelta(minutes=10), ACCURACY_AT + timedelta(minutes=20)
    timeline = replay(config, start, end, timedelta(minutes=1))

    expected: dict[str, tuple[Callable[[datetime], float], Callable[[float], bool], timedelta]] = {
        "error_rate": (error_share, lambda v: v > 0.02, timedelta(minutes=5)),
        "latency_p95": (p95, lambda v: v > 0.2, timedelta(minutes=5)),
        "accuracy": (accuracy, lambda v: v < 0.85, timedelta(minutes=10)),
    }
    first_breach = {}
    for name, (value_at, breaches, hold) in expected.items():
        rows = timeline[timeline["check"] == name].set_index("time")
        times = list(pd.DatetimeIndex(rows.index).to_pydatetime())
        values = [value_at(t) for t in times]
        assert rows["value"].tolist() == pytest.approx(values, rel=1e-9), name
        breach = [breaches(v) for v in values]
        first = breach.index(True)
        assert all(breach[first:]), f"{name} should breach for good once it starts"
        active_at = times[first]
        states = [
            "inactive" if t < active_at else "pending" if t - active_at < hold else "firing"
            for t in times
        ]
        assert rows["check_state"].tolist() == states, name
        first_breach[name] = active_at
    # The times the data was written to give: the first whole minute over each limit.
    assert first_breach == {
        "error_rate": ERRORS_AT + timedelta(minutes=2),
        "latency_p95": LATENCY_AT + timedelta(minutes=1),
        "accuracy": ACCURACY_AT,
    }
    rollback = timeline[timeline["decision"] == "rollback"]
    assert rollback["time"].tolist() == [ERRORS_AT + timedelta(minutes=7)]
