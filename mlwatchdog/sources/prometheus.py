"""The Prometheus source: metric checks' values from PromQL queries at an explicit time.

Every query names its evaluation time (the `at` the daemon or replay gives), so a replay over
history asks exactly what the daemon asked live. A check's query may use `$target`, `$namespace`
and `$workload` (like Grafana variables), so one query text serves many targets.

`instant` never raises: an unreachable server, an HTTP error (with Prometheus' own message, e.g. a
PromQL parse error), a timeout or an unusable result is an ERROR reading with a short reason, which
the core treats as inconclusive, never as a breach. `range` (reports) raises InputError instead.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from mlwatchdog.core import DataStatus, MetricReading
from mlwatchdog.errors import InputError
from mlwatchdog.rules import MetricCheck, PrometheusSource, Target

# Prometheus' default lookback delta: a sample older than this does not speak for `at`.
STALE_AFTER = timedelta(minutes=5)
_VARIABLE = re.compile(r"\$(target|namespace|workload)\b")
_SHOWN_SERIES = 3  # label sets named in a "several series" error
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_HTTP_ERROR = re.compile(r"^HTTP Status Code (\d+) \((b['\"].*['\"])\)$", re.DOTALL)


class QueryError(Exception):
    """A query that gave no usable value; the message is the reading's reason."""


class PrometheusReader:
    """Reads one `type: prometheus` source; shared by every check that names it."""

    def __init__(self, name: str, spec: PrometheusSource) -> None:
        self.name = name
        self.spec = spec
        self.timeout = spec.timeout.total_seconds()
        session = requests.Session()  # shared by the daemon's worker threads (GETs only)
        session.verify = spec.ca_file or spec.verify_tls  # a CA bundle path, or on/off
        headers = {str(k): str(v) for k, v in spec.headers.items()}
        if spec.bearer_token:  # wins over an Authorization in `headers` and over basic auth
            headers["Authorization"] = f"Bearer {spec.bearer_token.reveal()}"
        # The library's hints say int seconds and a non-optional auth tuple; requests takes both
        # a float and None, so the options go in untyped.
        options: dict[str, Any] = {"headers": headers, "session": session, "timeout": self.timeout}
        if spec.username is not None and not spec.bearer_token:
            options["auth"] = (spec.username, spec.password.reveal() if spec.password else "")
        self.client = PrometheusConnect(
            url=spec.url.reveal().rstrip("/"),
            # No retries (requests' own default): the library's retries a failing server for ~6 s,
            # but a reading must come back within `timeout`; the next evaluation is the retry.
            retry=Retry(total=0, read=False),
            **options,
        )

    def instant(self, check: MetricCheck, target: Target, at: datetime) -> MetricReading:
        """The check's value at `at`, or why there is none (never raises)."""
        try:
            query = render(check.query, target)
            # `timeout` also makes Prometheus give up on a query the client stopped waiting for.
            params = {"time": _epoch(at), "timeout": f"{self.timeout:.3f}"}
            result = self._ask(self.client.custom_query, query, params=params)
            return _reading(result, _labels(check, target), at)
        except QueryError as exc:
            return MetricReading(DataStatus.ERROR, reason=str(exc))
        except (LookupError, TypeError, ValueError) as exc:  # a malformed answer, not a crash
            reason = f"unexpected answer from {self.spec.url}: {exc!r}"[:200]
            return MetricReading(DataStatus.ERROR, reason=reason)

    def range(
        self, check: MetricCheck, target: Target, start: datetime, end: datetime, step: timedelta
    ) -> pd.Series:
        """The check's values from `start` to `end` every `step`, indexed by UTC time.

        Empty when the query matches nothing; raises InputError when the source fails or the
        query gives several series (a report needs one clear line, not a silent gap).
        """
        try:
            query = render(check.query, target)
            result = self._ask(
                self.client.custom_query_range,
                query,
                start_time=_utc(start),
                end_time=_utc(end),
                step=f"{step.total_seconds():.3f}",
                params={"timeout": f"{self.timeout:.3f}"},
            )
            series = _select(_series_list(result, "values"), _labels(check, target))
        except QueryError as exc:
            raise InputError(f"check {check.name!r} on source {self.name!r}: {exc}") from None
        if not series:
            return pd.Series(dtype=float, index=pd.DatetimeIndex([], tz=UTC), name=check.name)
        values = series[0]["values"]
        index = pd.to_datetime([float(t) for t, _ in values], unit="s", utc=True)
        return pd.Series([float(v) for _, v in values], index=index, name=check.name)

    def _ask(self, call: Any, query: str, **kwargs: Any) -> Any:
        """The library call's result, with every failure turned into a QueryError."""
        try:
            return call(query, **kwargs)
        except requests.Timeout:  # before ConnectionError: ConnectTimeout is both
            raise QueryError(f"no answer from {self.spec.url} within {self.timeout:g}s") from None
        except requests.ConnectionError as exc:
            found = _ERRNO.search(str(exc))
            why = found.group(1).strip() if found else type(exc).__name__
            raise QueryError(f"cannot reach {self.spec.url}: {why}") from None
        except (requests.JSONDecodeError, KeyError, TypeError):  # response.json()["data"]
            raise QueryError(f"{self.spec.url} did not answer with Prometheus API JSON") from None
        except requests.RequestException as exc:
            raise QueryError(f"request to {self.spec.url} failed: {exc}") from None
        except PrometheusApiClientException as exc:
            raise QueryError(_http_error(str(exc))) from None


def render(query: str, target: Target) -> str:
    """The query with $target, $namespace and $workload replaced by the target's values."""
    values = {
        "target": target.name,
        "namespace": target.workload.namespace,
        "workload": target.workload.name,
    }

    def substitute(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        if value is None:
            raise QueryError(f"the query uses $workload but target {target.name!r} has no workload")
        return value

    return _VARIABLE.sub(substitute, query)


def _labels(check: MetricCheck, target: Target) -> dict[str, str]:
    return {key: render(value, target) for key, value in check.labels.items()}


def _reading(result: Any, labels: Mapping[str, str], at: datetime) -> MetricReading:
    """A MetricReading from an instant query's `data.result`."""
    # The library drops `resultType`; the shapes tell them apart: scalar and string results are
    # [time, "text"], vectors are lists of {"metric", "value"}, matrices of {"metric", "values"}.
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        sample = result
    else:
        found = _series_list(result, "value")
        if not found:
            return MetricReading(DataStatus.NO_DATA, reason="query returned no series")
        series = _select(found, labels)
        if not series:
            return MetricReading(
                DataStatus.NO_DATA,
                reason=f"none of the {len(found)} series has labels {_show(labels)}: "
                + _some(found),
            )
        sample = series[0]["value"]
    try:
        stamp, value = float(sample[0]), float(sample[1])
    except ValueError:  # a string result, e.g. of the query '"up"'
        return MetricReading(DataStatus.ERROR, reason=f"query returned {sample[1]!r}, not a number")
    if math.isnan(value):
        return MetricReading(DataStatus.NO_DATA, reason="query returned NaN (e.g. 0/0: no traffic)")
    # Prometheus stamps instant results with the evaluation time and drops series without a
    # sample in its lookback; an older stamp means the server answered for another time.
    age = _epoch(at) - stamp
    if age > STALE_AFTER.total_seconds():
        when = datetime.fromtimestamp(stamp, UTC).isoformat()
        return MetricReading(
            DataStatus.STALE, value, f"newest value is from {when}, {age:.0f}s before {at}"
        )
    return MetricReading(DataStatus.OK, value)


def _series_list(result: Any, key: str) -> list[dict[str, Any]]:
    """The result's series, each with `key` ("value" for instant, "values" for range queries)."""
    if not isinstance(result, list) or not all(isinstance(s, dict) for s in result):
        raise QueryError(f"unexpected result {str(result)[:80]!r}")
    if result and key == "value" and "values" in result[0]:
        raise QueryError(
            "query returned a range vector; make it an instant one, e.g. rate(x[5m]) or "
            "max_over_time(x[5m])"
        )
    if not all(key in s for s in result):
        raise QueryError(f"unexpected result {str(result)[:80]!r}")
    return result


def _select(series: list[dict[str, Any]], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The series with all of `labels`; an error when more than one is left."""
    kept = [s for s in series if all(s["metric"].get(k) == v for k, v in labels.items())]
    if len(kept) > 1:
        raise QueryError(
            f"query returned {len(kept)} series ({_some(kept)}); aggregate with sum()/max() or "
            "match `labels:`"
        )
    return kept


def _some(series: list[dict[str, Any]]) -> str:
    shown = [_show(s["metric"]) for s in series[:_SHOWN_SERIES]]
    return ", ".join(shown) + (", ..." if len(series) > _SHOWN_SERIES else "")


def _show(metric: Mapping[str, str]) -> str:
    """A label set as Prometheus prints it: name{label="value", ...}."""
    name = metric.get("__name__", "")
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{pairs}}}"


def _http_error(message: str) -> str:
    """'HTTP 400: bad_data: <Prometheus' message>' from the library's exception text."""
    # The library puts repr(response.content) in its message; the body's `error` is the useful part.
    found = _HTTP_ERROR.match(message)
    if not found:
        return message[:200]
    status, body = found.group(1), ast.literal_eval(found.group(2)).decode("utf-8", "replace")
    try:
        data = json.loads(body)
        detail = f"{data['errorType']}: {data['error']}"
    except (ValueError, KeyError, TypeError):
        detail = " ".join(body.split())[:200] or "(empty body)"
    return f"HTTP {status}: {detail}"


def _utc(moment: datetime) -> datetime:
    """`moment` with a timezone; a naive one is taken as UTC (not as the host's local time)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _epoch(moment: datetime) -> float:
    return _utc(moment).timestamp()
