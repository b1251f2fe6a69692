"""`mlwatchdog run` writes a report on every decision without being asked, beside its state
folder, and serves the index of reports and the landing page to those who may read, as it serves
the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.daemon_process import (
    TARGET,
    DaemonProcess,
    Feeder,
    is_ready,
    rollbacks,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

VIEWER = "v1ewer-token-read-only"


def test_a_decision_writes_a_report_that_the_index_and_landing_page_list(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    rules: dict[str, Any] = yaml.safe_load(config.read_text())
    rules["daemon"]["auth"] = {"tokens": [{"name": "viewer", "token": VIEWER, "roles": ["read"]}]}
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon = DaemonProcess(config, port, tmp_path / "d.log", token=VIEWER)
    processes.append(daemon)
    wait_for(daemon, "readiness", lambda: is_ready(daemon), timeout=60)

    anonymous = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
    for path in ("/", "/reports/", "/reports/x/"):
        assert anonymous.get(path).status_code == 401, path
    assert daemon.http.get("/reports/").status_code == 200
    assert "No reports yet" in daemon.http.get("/reports/").text

    feeder.drift.set()
    wait_for(daemon, "a dry-run rollback", lambda: rollbacks(daemon), timeout=90)

    def decision_report() -> dict[str, Any] | None:
        listed = daemon.http.get("/api/v1/reports").json()
        return next((r for r in listed if "rollback" in r["decision"]), None)

    report = wait_for(daemon, "the rollback's report", decision_report, timeout=60)
    assert report["trigger"] == "decision" and report["target"] == TARGET
    # Beside the state folder (state_dir is tmp_path/state; rules.yaml names no reports path).
    folder = tmp_path / "reports" / report["id"]
    assert (folder / "index.html").is_file() and (folder / "report.json").is_file()

    page = daemon.http.get(f"/reports/{report['id']}/").text
    assert 'class="marker"' in page  # the rollback, on the checks' timelines
    assert 'class="line reference"' in page and 'class="ks-d"' in page
    index = daemon.http.get("/reports/").text
    assert f'href="{report["id"]}/"' in index and "rollback to prior (dry-run)" in index
    landing = daemon.http.get("/").text
    newest = daemon.http.get("/api/v1/reports").json()[0]
    assert TARGET in landing and f'href="reports/{newest["id"]}/"' in landing
