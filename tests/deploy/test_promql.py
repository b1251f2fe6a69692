"""The PromQL in deploy/: the PrometheusRule alerts, the Grafana dashboard and the Argo
AnalysisTemplate read only series the daemon exports (names taken from its live metrics
registry), call only PromQL functions, and parse (`promtool check rules`); the alerts fire on
the series they are meant for (`promtool test rules`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    BASE,
    DASHBOARD,
    EXAMPLES,
    load_all,
    normalize_promql,
    one,
    promql_names,
    render,
    unknown_functions,
)

# Metric names used in deploy/ that the daemon does not export yet, each with why. Reported as a
# warning on every run while needed, and reported again once exported, to be removed here.
# Metrics a query may use before DaemonMetrics exports them (name: why), while being added.
PENDING_METRICS: dict[str, str] = {}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    from tests.deploy.manifests import exported_metric_names

    names = exported_metric_names()
    assert "mlwatchdog_evaluations_total" in names  # counters as exposed
    assert "mlwatchdog_evaluation_duration_seconds_bucket" in names  # histograms as exposed
    return names


def alert_rules() -> list[dict[str, Any]]:
    rule = one(render(BASE), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard() -> dict[str, Any]:
    with open(DASHBOARD, encoding="utf-8") as f:
        board: dict[str, Any] = json.load(f)
        return board


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every query: panel targets, annotations, template variables."""
    board = dashboard()
    found = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in board["panels"]
        for t in p.get("targets", [])
    ]
    found += [
        (f"annotation {a['name']!r}", a["expr"])
        for a in board["annotations"]["list"]
        if "expr" in a
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = text.removeprefix("label_values(").rsplit(",", 1)[0]
            found.append((f"variable {variable['name']!r}", inner))
    return found


def analysis_queries() -> list[tuple[str, str]]:
    docs = load_all(EXAMPLES / "argo-rollout.yaml")
    template = next(d for d in docs if d["kind"] == "AnalysisTemplate")
    return [
        (f"metric {m['name']!r}", m["provider"]["prometheus"]["query"])
        for m in template["spec"]["metrics"]
    ]


def all_exprs() -> list[tuple[str, str]]:
    alerts = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    return (
        alerts
        + [(f"dashboard {w}", e) for w, e in dashboard_exprs()]
        + [(f"AnalysisTemplate {w}", e) for w, e in analysis_queries()]
    )


def test_the_tokenizer_finds_metric_names_and_nothing_else() -> None:
    metrics, calls = promql_names(
        'time() - max by (target) (mlwatchdog_last_evaluation_timestamp_seconds{job="x",le="1"})'
        ' > 300 or histogram_quantile(0.95, sum by (le) (rate(foo_bucket{a=~"b|c"}[$__rate_interval'
        "]))) and on (target, check) bar offset 5m unless sum(increase(baz_total[1h:5m])) "
        'by (pod) > 1e3 and absent(qux{target="{{args.target}}"})'
    )
    assert metrics == {
        "mlwatchdog_last_evaluation_timestamp_seconds",
        "foo_bucket",
        "bar",
        "baz_total",
        "qux",
    }
    assert calls == {"time", "max", "histogram_quantile", "sum", "rate", "increase", "absent"}
    assert unknown_functions({"rte", "rate"}) == {"rte"}


@pytest.mark.parametrize("where, expr", all_exprs(), ids=[w for w, _ in all_exprs()])
def test_every_expression_reads_only_exported_metrics(
    where: str, expr: str, exported: set[str]
) -> None:
    metrics, calls = promql_names(expr)
    assert metrics, f"{where}: no metric name found in {expr!r}"
    assert not unknown_functions(calls), f"{where}: unknown PromQL functions"
    missing = metrics - exported
    pending = missing & PENDING_METRICS.keys()
    for name in sorted(pending):
        warnings.warn(
            f"{where} uses {name}, not in DaemonMetrics yet: allowed by PENDING_METRICS "
            f"({PENDING_METRICS[name]})",
            stacklevel=1,
        )
    assert missing - pending == set(), (
        f"{where}: {sorted(missing - pending)} are not exported by mlwatchdog "
        f"(exported: {sorted(n for n in exported if not n.endswith('_created'))})"
    )


def test_the_pending_allow_list_is_still_needed(exported: set[str]) -> None:
    landed = sorted(PENDING_METRICS.keys() & exported)
    for name in landed:
        warnings.warn(
            f"{name} is exported now: remove it from PENDING_METRICS in {__file__}",
            stacklevel=1,
        )
    used = set().union(*(promql_names(e)[0] for _, e in all_exprs()))
    assert PENDING_METRICS.keys() <= used, "an allow-listed name is used nowhere: remove it"


def test_the_dashboard_covers_the_daemons_metrics(exported: set[str]) -> None:
    """A metric the daemon exports without a dashboard panel is reported (a warning: a new
    metric should not fail someone else's change; add a panel to the dashboard)."""
    used = set().union(*(promql_names(e)[0] for _, e in dashboard_exprs()))
    own = {n for n in exported if n.startswith("mlwatchdog_")}  # not process_*, python_*
    shown = {n for n in own if not n.endswith(("_created", "_sum", "_count"))}
    for name in sorted(shown - used):
        warnings.warn(f"{name} has no panel in {DASHBOARD.name}", stacklevel=1)
    assert len(shown & used) >= 15, sorted(shown & used)


# What on-call must see of the watchdog's own health: each is alerted on and has a panel.
HEALTH_METRICS = {
    "mlwatchdog_writes_failing": "MlwatchdogWritesFailing",
    "mlwatchdog_write_failures_total": "MlwatchdogWritesFailing",
    "mlwatchdog_target_blind": "MlwatchdogTargetBlind",
    "mlwatchdog_target_blind_since_seconds": "MlwatchdogTargetBlind",
    "mlwatchdog_sink_events_total": "MlwatchdogSinkRefusingEvents",
    "mlwatchdog_source_set_aside_total": "MlwatchdogInputSetAside",
    "mlwatchdog_evaluations_skipped_total": "MlwatchdogSaturated",
}
HEALTH_PANELS = {  # the row "Health of the watchdog"
    "Writes failing",
    "Blind targets",
    "Blind for",
    "KServe sink events",
    "Inputs set aside",
}


@pytest.mark.parametrize("name", HEALTH_METRICS)
def test_the_watchdogs_health_is_alerted_on_and_shown(name: str, exported: set[str]) -> None:
    assert name in exported
    alerting = {r["alert"] for r in alert_rules() if name in promql_names(r["expr"])[0]}
    assert HEALTH_METRICS[name] in alerting, f"no alert {HEALTH_METRICS[name]} on {name}"
    shown = [w for w, e in dashboard_exprs() if name in promql_names(e)[0]]
    assert shown, f"{name} has no panel in {DASHBOARD.name}"


def test_the_health_panels_are_in_their_row() -> None:
    rows = [p for p in dashboard()["panels"] if p["type"] == "row"]
    row = next(r for r in rows if r["title"] == "Health of the watchdog")
    below = [r["gridPos"]["y"] for r in rows if r["gridPos"]["y"] > row["gridPos"]["y"]]
    end = min(below, default=10**6)
    inside = {
        p["title"]
        for p in dashboard()["panels"]
        if p["type"] != "row" and row["gridPos"]["y"] < p["gridPos"]["y"] < end
    }
    assert inside == HEALTH_PANELS


# --- promtool ------------------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is absent (`make test` installs Debian's prometheus package, as root)",
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def write_rules(path: Path, annotations: bool = True) -> Path:
    """The PrometheusRule's groups as a Prometheus rules file (promtool's unit tests compare
    annotations too: without them, the tests are about when alerts fire and their labels)."""
    groups = one(render(BASE), "PrometheusRule")["spec"]["groups"]
    if not annotations:
        for rule in (r for g in groups for r in g["rules"]):
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    return path


@needs_promtool
def test_promtool_checks_the_alert_rules(tmp_path: Path) -> None:
    done = promtool("check", "rules", str(write_rules(tmp_path / "rules.yaml")), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


@needs_promtool
def test_promtool_parses_the_dashboard_and_analysis_queries(tmp_path: Path) -> None:
    """Each query as a recording rule (Grafana and Argo variables substituted), so promtool's
    parser checks it."""
    exprs = [(w, e) for w, e in all_exprs() if not w.startswith("alert ")]
    rules = [
        {"record": f"deploy:query_{i}", "expr": normalize_promql(e)}
        for i, (_, e) in enumerate(exprs)
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}), encoding="utf-8")
    done = promtool("check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# Series as two replicas export them (pod a leads, pod b stands by), 1-minute samples.
def series(name: str, values: str, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


STEADY = [
    series("mlwatchdog_leader", "1x30", pod="a"),
    series("mlwatchdog_leader", "0x30", pod="b"),
    series("mlwatchdog_shard_leader", "1x30", shard="0", pod="a"),
    series("mlwatchdog_shard_leader", "0x30", shard="0", pod="b"),
]
ALERT_TESTS: list[dict[str, Any]] = [
    {  # healthy: nothing fires
        "interval": "1m",
        "input_series": [
            *STEADY,
            series("mlwatchdog_target_state", "1x30", target="fraud", state="healthy", pod="a"),
            series("mlwatchdog_target_state", "0x30", target="fraud", state="escalated", pod="a"),
            series(
                "mlwatchdog_last_evaluation_timestamp_seconds", "0+60x30", target="fraud", pod="a"
            ),
            series("mlwatchdog_evaluations_total", "0+1x30", target="fraud", result="ok", pod="a"),
            # The health series as a fresh daemon exports them: zeros, and events stored.
            *[
                series(name, "0x30", what=what, pod=pod)
                for name in ("mlwatchdog_writes_failing", "mlwatchdog_write_failures_total")
                for what in ("state", "audit", "journal", "bundle", "sink")
                for pod in ("a", "b")
            ],
            series("mlwatchdog_target_blind", "0x30", target="fraud", pod="a"),
            series("mlwatchdog_target_blind_since_seconds", "0x30", target="fraud", pod="a"),
            series(
                "mlwatchdog_sink_events_total", "0+60x30", result="stored", reason="ok", pod="a"
            ),
            *[
                series("mlwatchdog_evaluations_skipped_total", "0x30", reason=reason, pod=pod)
                for reason in ("busy", "late")
                for pod in ("a", "b")
            ],
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": name, "exp_alerts": []}
            for name in (
                "MlwatchdogAbsent",
                "MlwatchdogNotEvaluating",
                "MlwatchdogEvaluationsFailing",
                "MlwatchdogEscalated",
                "MlwatchdogNoLeader",
                "MlwatchdogSeveralLeaders",
                "MlwatchdogRolledBack",
                "MlwatchdogWritesFailing",
                "MlwatchdogTargetBlind",
                "MlwatchdogSinkRefusingEvents",
                "MlwatchdogInputSetAside",
                "MlwatchdogSaturated",
            )
        ],
    },
    {  # an incident: rollback decided on both replicas, then escalated; one alert per target
        "interval": "1m",
        "input_series": STEADY
        + [
            series(
                "mlwatchdog_decisions_total",
                "0x5 1x25",
                target="fraud",
                kind="rollback",
                to="prior",
                dry_run="true",
                pod=pod,
            )
            for pod in ("a", "b")
        ]
        + [
            series("mlwatchdog_target_state", "0x10 1x20", target="fraud", state="escalated", pod=p)
            for p in ("a", "b")
        ]
        + [
            series(
                "mlwatchdog_actions_total", "0x5 1x25", target="fraud", result="refused", pod="a"
            )
        ],
        "alert_rule_test": [
            {
                "eval_time": "8m",
                "alertname": "MlwatchdogRolledBack",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "target": "fraud"}}],
            },
            {
                "eval_time": "8m",
                "alertname": "MlwatchdogRollbackRefused",
                "exp_alerts": [{"exp_labels": {"severity": "critical", "target": "fraud"}}],
            },
            {
                "eval_time": "15m",
                "alertname": "MlwatchdogEscalated",
                "exp_alerts": [{"exp_labels": {"severity": "critical", "target": "fraud"}}],
            },
        ],
    },
    {  # the daemon stuck, failing, leaderless, then gone
        "interval": "1m",
        "input_series": [
            series("mlwatchdog_leader", "0x20 _x20", pod="a"),
            series("mlwatchdog_leader", "0x20 _x20", pod="b"),
            series("mlwatchdog_shard_leader", "0x20 _x20", shard="0", pod="a"),
            series("mlwatchdog_shard_leader", "0x20 _x20", shard="0", pod="b"),
            series(
                "mlwatchdog_last_evaluation_timestamp_seconds", "60x20", target="fraud", pod="a"
            ),
            series(
                "mlwatchdog_evaluations_total", "0+1x20", target="fraud", result="error", pod="a"
            ),
        ],
        "alert_rule_test": [
            {
                "eval_time": "20m",
                "alertname": "MlwatchdogNotEvaluating",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "target": "fraud"}}],
            },
            {
                "eval_time": "20m",
                "alertname": "MlwatchdogEvaluationsFailing",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "target": "fraud"}}],
            },
            {
                "eval_time": "10m",
                "alertname": "MlwatchdogNoLeader",
                "exp_alerts": [{"exp_labels": {"severity": "critical", "shard": "0"}}],
            },
            {
                "eval_time": "40m",
                "alertname": "MlwatchdogAbsent",
                "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
            },
        ],
    },
    {  # three replicas over three shards, one each (then pod c's shard taken over by a):
        # every replica is a leader, no shard has two or none
        "interval": "1m",
        "input_series": [
            series("mlwatchdog_leader", "1x10", pod="a"),
            series("mlwatchdog_leader", "1x10", pod="b"),
            series("mlwatchdog_leader", "1x4 _x6", pod="c"),
            series("mlwatchdog_shard_leader", "1x10", shard="0", pod="a"),
            series("mlwatchdog_shard_leader", "0x4 1x6", shard="2", pod="a"),
            series("mlwatchdog_shard_leader", "1x10", shard="1", pod="b"),
            series("mlwatchdog_shard_leader", "0x10", shard="0", pod="b"),
            series("mlwatchdog_shard_leader", "1x4 _x6", shard="2", pod="c"),
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "MlwatchdogSeveralLeaders", "exp_alerts": []},
            {"eval_time": "9m", "alertname": "MlwatchdogNoLeader", "exp_alerts": []},
        ],
    },
    {  # leader election off with two replicas
        "interval": "1m",
        "input_series": [
            series("mlwatchdog_leader", "1x10", pod="a"),
            series("mlwatchdog_leader", "1x10", pod="b"),
            series("mlwatchdog_shard_leader", "1x10", shard="0", pod="a"),
            series("mlwatchdog_shard_leader", "1x10", shard="0", pod="b"),
            series("mlwatchdog_config_last_reload_successful", "0x10", pod="b"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "8m",
                "alertname": "MlwatchdogSeveralLeaders",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "shard": "0"}}],
            },
            {
                "eval_time": "8m",
                "alertname": "MlwatchdogConfigReloadFailed",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "pod": "b"}}],
            },
        ],
    },
]


# The watchdog's own health. Each case has a twin that must not fire: a fault that passes, a
# replica that disagrees, a burst, a trickle.
ALERT_TESTS += [
    {  # writes: pod a's state fails for good, pod b's bundles fail every other minute, pod b's
        # journal failed once and the retry wrote it (no alert), audit never fails; pod b's sink
        # store fails for good (the pod out of its Service: no more events, so no more failures)
        "interval": "1m",
        "input_series": [
            series("mlwatchdog_writes_failing", "0x5 1x25", what="sink", pod="b"),
            series("mlwatchdog_write_failures_total", "0x5 3x25", what="sink", pod="b"),
            series("mlwatchdog_writes_failing", "0x5 1x25", what="state", pod="a"),
            series("mlwatchdog_write_failures_total", "0x5 1+1x25", what="state", pod="a"),
            series("mlwatchdog_writes_failing", "0x5 " + "1 0 " * 12, what="bundle", pod="b"),
            series(
                "mlwatchdog_write_failures_total",
                "0x5 " + " ".join(str(1 + i // 2) for i in range(24)),
                what="bundle",
                pod="b",
            ),
            series("mlwatchdog_writes_failing", "0x5 1 0x24", what="journal", pod="b"),
            series("mlwatchdog_write_failures_total", "0x5 1x25", what="journal", pod="b"),
            series("mlwatchdog_writes_failing", "0x30", what="audit", pod="a"),
            series("mlwatchdog_write_failures_total", "0x30", what="audit", pod="a"),
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": "MlwatchdogWritesFailing", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "MlwatchdogWritesFailing",
                "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "pod": "a", "what": "state"}},
                    {"exp_labels": {"severity": "critical", "pod": "b", "what": "sink"}},
                    {"exp_labels": {"severity": "warning", "pod": "b", "what": "bundle"}},
                ],
            },
        ],
    },
    {  # blind: fraud's samples missing since 1m, blind from 16m (a 15m window) on both pods
        # (one alert); churn blind on pod a for 5 minutes, then it sees again
        "interval": "1m",
        "input_series": [
            *[
                series("mlwatchdog_target_blind", "0x15 1x400", target="fraud", pod=p)
                for p in ("a", "b")
            ],
            series("mlwatchdog_target_blind_since_seconds", "0x15 60x400", target="fraud", pod="a"),
            series("mlwatchdog_target_blind_since_seconds", "0x15 70x400", target="fraud", pod="b"),
            series("mlwatchdog_target_blind", "0x15 1x5 0x395", target="churn", pod="a"),
            series(
                "mlwatchdog_target_blind_since_seconds", "0x15 60x5 0x395", target="churn", pod="a"
            ),
            series("mlwatchdog_target_blind", "0x415", target="churn", pod="b"),
            series("mlwatchdog_target_blind_since_seconds", "0x415", target="churn", pod="b"),
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "MlwatchdogTargetBlind", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "MlwatchdogTargetBlind",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "target": "fraud"}}],
            },
            {  # missing for 6h at 361m: critical from 371m on
                "eval_time": "368m",
                "alertname": "MlwatchdogTargetBlind",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "target": "fraud"}}],
            },
            {
                "eval_time": "380m",
                "alertname": "MlwatchdogTargetBlind",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "target": "fraud"}},
                    {"exp_labels": {"severity": "critical", "target": "fraud"}},
                ],
            },
        ],
    },
    {  # the sink, 2 events/s over two pods: column_count refused at 0.2/s (9%) for good;
        # disconnected at 1/min (under 1%); too_old, a burst of 100 once
        "interval": "1m",
        "input_series": [
            *[
                series(
                    "mlwatchdog_sink_events_total", "0+60x40", result="stored", reason="ok", pod=p
                )
                for p in ("a", "b")
            ],
            series(
                "mlwatchdog_sink_events_total",
                "0+12x40",
                result="refused",
                reason="column_count",
                pod="a",
            ),
            series(
                "mlwatchdog_sink_events_total",
                "0+1x40",
                result="refused",
                reason="disconnected",
                pod="b",
            ),
            series(
                "mlwatchdog_sink_events_total",
                "0x5 100x35",
                result="refused",
                reason="too_old",
                pod="b",
            ),
        ],
        "alert_rule_test": [
            {"eval_time": "12m", "alertname": "MlwatchdogSinkRefusingEvents", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "MlwatchdogSinkRefusingEvents",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "reason": "column_count"}}],
            },
        ],
    },
    {  # a trickle: an event a minute, one in ten refused (not_json): below 3 refused per 10m
        "interval": "1m",
        "input_series": [
            series("mlwatchdog_sink_events_total", "0+1x60", result="stored", reason="ok", pod="a"),
            series(
                "mlwatchdog_sink_events_total",
                " ".join(str(i // 10) for i in range(61)),
                result="refused",
                reason="not_json",
                pod="a",
            ),
        ],
        "alert_rule_test": [
            {"eval_time": "50m", "alertname": "MlwatchdogSinkRefusingEvents", "exp_alerts": []},
        ],
    },
    {  # set aside: a corrupt file met by every read on both replicas (one alert); a
        # half-written file met once at 11m, complete at the next read
        "interval": "1m",
        "input_series": [
            *[
                series(
                    "mlwatchdog_source_set_aside_total",
                    "1+1x60",
                    source="fraud_samples",
                    what="file",
                    reason="corrupt",
                    pod=p,
                )
                for p in ("a", "b")
            ],
            series(
                "mlwatchdog_source_set_aside_total",
                "1x10 2x50",
                source="fraud_samples",
                what="file",
                reason="truncated",
                pod="a",
            ),
        ],
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "MlwatchdogInputSetAside", "exp_alerts": []},
            {
                "eval_time": "40m",
                "alertname": "MlwatchdogInputSetAside",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "source": "fraud_samples",
                            "what": "file",
                            "reason": "corrupt",
                        }
                    }
                ],
            },
        ],
    },
    {  # pod a skips evaluations for 30 minutes (busy), pod b once (a blip, not saturation)
        "interval": "1m",
        "input_series": [
            *STEADY,
            series("mlwatchdog_evaluations_skipped_total", "0x5 0+40x30", reason="busy", pod="a"),
            series("mlwatchdog_evaluations_skipped_total", "0x5 3x30", reason="late", pod="b"),
        ],
        "alert_rule_test": [
            {"eval_time": "12m", "alertname": "MlwatchdogSaturated", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "MlwatchdogSaturated",
                "exp_alerts": [{"exp_labels": {"severity": "warning", "pod": "a"}}],
            },
        ],
    },
]


@needs_promtool
def test_the_alerts_fire_when_they_should(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules.yaml", annotations=False)
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": ALERT_TESTS}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    done = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
