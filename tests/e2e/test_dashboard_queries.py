"""The Grafana dashboard against a real daemon and a real Prometheus.

`mlwatchdog run` (tests/e2e/daemon_process.py) evaluates the demo's credit-model on undrifted,
then drifted samples until it decides a dry-run rollback, with a corrupt file among its samples
and one refused event at its KServe sink, while a real Prometheus scrapes its /metrics every
second. Then, with the dashboard's variables set as Grafana sets them (each variable's own query
against that Prometheus, every value selected), every panel's query returns at least one series;
the threshold lines read exactly the thresholds of the rules (alpha, PSI limit, effect floor,
drift share); the first rollback shows as an increase; and the link to the latest decision's
report opens that target's report.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwatchdog import __version__
from mlwatchdog.demo import PARTITIONING
from tests.deploy.manifests import DASHBOARD
from tests.e2e.daemon_process import (
    TARGET,
    DaemonProcess,
    Feeder,
    is_ready,
    rollbacks,
    value,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port
from tests.servers.prometheus import PrometheusServer, running_prometheus

pytestmark = pytest.mark.timeout(300)

# Grafana's $__rate_interval is at least 4 scrape intervals (1s here); 10s holds several.
RATE_INTERVAL = "10s"
REPORT_LINK = "${mlwatchdog_url}/reports/latest?target=${__field.labels.target}"


def substitute(expr: str, variables: dict[str, list[str]]) -> str:
    """Grafana's interpolation: a multi-value variable with every value selected becomes the
    regex `(a|b)`; $__rate_interval a duration."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "__rate_interval":
            return RATE_INTERVAL
        return "(" + "|".join(variables[name]) + ")"

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def variable_values(prometheus: PrometheusServer, board: dict[str, Any]) -> dict[str, list[str]]:
    """Each query variable's values, in the dashboard's order (each narrows the next)."""
    found: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        definition = substitute(variable["definition"], found)
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
        assert match, definition
        found[variable["name"]] = prometheus.label_values(match.group(2), match.group(1))
    return found


def wait_until(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g}s")
        time.sleep(0.25)


def series(result: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = result["result"]
    return found


def latest(item: dict[str, Any]) -> float:
    """The last value of an instant or range query's series."""
    return float(item["value"][1] if "value" in item else item["values"][-1][1])


def test_every_panel_of_the_dashboard_shows_data_from_a_real_daemon(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    port = free_port()
    config = write_config(tmp_path, port)
    rules = yaml.safe_load(config.read_text())
    # A KServe source gives the daemon its sink (POST /sink/kserve), as in production.
    rules["sources"]["kserve_logs"] = {"type": "kserve", "inference_service": "credit"}
    rules["daemon"]["sink"] = {"path": str(tmp_path / "sink")}
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    processes.append(daemon)
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=30)

    # No report yet: the link says so, and how to get one.
    missing = daemon.get(f"/reports/latest?target={TARGET}")
    assert missing is not None and missing.status_code == 404
    assert "no report of target" in missing.json()["detail"]

    with running_prometheus(scrape=[f"127.0.0.1:{port}"]) as prometheus:
        started = time.time()
        # What the health panels show: a corrupt file among the samples, a refused sink event.
        for moment in (time.time(), time.time() + 60):  # the next hour's folder too, if near
            corrupt = tmp_path / "live" / time.strftime(PARTITIONING, time.gmtime(moment))
            corrupt.mkdir(parents=True, exist_ok=True)
            (corrupt / "part-corrupt.parquet").write_bytes(b"not a parquet file")
        refused = daemon.http.post(
            "/sink/kserve", content=b"not json", headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 400, refused.text
        wait_for(
            daemon,
            "a corrupt file set aside",
            lambda: value(daemon.metrics(), "mlwatchdog_source_set_aside_total", reason="corrupt"),
            timeout=30,
        )

        feeder.drift.set()
        wait_for(daemon, "a dry-run rollback", lambda: rollbacks(daemon), timeout=90)
        asked = daemon.http.post(f"/api/v1/targets/{TARGET}/evaluate", params={"report": "true"})
        assert asked.status_code == 200, asked.text
        # Prometheus has scraped the daemon after all that, and often enough for the rates.
        done = value(daemon.metrics(), "mlwatchdog_evaluations_total", target=TARGET) or 0.0

        def caught_up() -> bool:
            found = series(prometheus.query("sum(mlwatchdog_evaluations_total)"))
            return bool(found) and latest(found[0]) >= done

        wait_until("scrape of the last evaluation", caught_up, timeout=30)
        wait_until(
            "12 scrapes in the last 15s",
            lambda: bool(series(prometheus.query("count_over_time(mlwatchdog_leader[15s]) >= 12"))),
            timeout=30,
        )
        now = time.time()

        variables = variable_values(prometheus, board)
        checks = {c["name"]: c for c in rules["targets"][0]["checks"]}
        assert variables["target"] == [TARGET]
        assert sorted(variables["check"]) == sorted(checks)
        columns = rules["targets"][0]["columns"]
        assert sorted(variables["column"]) == sorted(
            [*columns["features"], *columns["predictions"]]
        )

        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        empty = []
        for panel in board["panels"]:
            for query in panel.get("targets", []):
                expr = substitute(query["expr"], variables)
                if query.get("instant"):
                    data = prometheus.query(expr, at=now)
                else:
                    data = prometheus.query_range(expr, started, now, 1.0)
                results[panel["title"], query["refId"]] = series(data)
                if not series(data):
                    empty.append(f"{panel['title']} ({query['refId']}): {expr}")
        assert empty == [], "panels without data:\n" + "\n".join(empty)

    def by_check(title: str, ref: str) -> dict[str, float]:
        return {s["metric"]["check"]: latest(s) for s in results[title, ref]}

    # Every threshold line is the threshold the rules set for that test, never the drift share.
    def tested_with(test: str) -> dict[str, float]:
        return {n: c["threshold"] for n, c in checks.items() if c["test"] == test}

    assert by_check("KS p-value per column", "B") == tested_with("ks")
    assert by_check("Chi-square p-value per column", "B") == tested_with("chi2")
    assert by_check("PSI per column", "B") == tested_with("psi")
    assert by_check("Check value vs threshold", "B") == {
        n: c["drift_share"] for n, c in checks.items()
    }
    floors = {
        (s["metric"]["check"], s["metric"]["measure"]): latest(s)
        for s in results["Effect size per column", "B"]
    }
    assert floors == {
        (n, c["effect"]["measure"]): c["effect"]["min"] for n, c in checks.items() if "effect" in c
    }
    # The per-test panels hold their test's columns only.
    ks_columns = {s["metric"]["column"] for s in results["KS statistic D per column", "A"]}
    assert ks_columns == {c for c, kind in columns["features"].items() if kind == "numeric"}
    [build] = results["Version", "A"]
    assert build["metric"]["version"] == __version__
    # The first rollback is an increase (its counter started at 0), not a series born at 1.
    decided = [
        s
        for s in results["Decisions", "A"]
        if s["metric"]["kind"] == "rollback" and s["metric"]["dry_run"] == "true"
    ]
    assert decided and max(float(v) for _, v in decided[0]["values"]) > 0

    # The latest decision's value links to its report.
    [decision] = [s for s in results["Latest decision", "A"] if s["metric"]["kind"] == "rollback"]
    assert latest(decision) / 1000 >= started
    link = REPORT_LINK.replace("${mlwatchdog_url}", f"http://127.0.0.1:{port}").replace(
        "${__field.labels.target}", decision["metric"]["target"]
    )
    opened = daemon.http.get(link, follow_redirects=True)
    assert opened.status_code == 200, opened.text
    assert re.fullmatch(rf"/reports/{TARGET}-\d{{8}}T\d+Z/", opened.url.path)
    assert TARGET in opened.text
