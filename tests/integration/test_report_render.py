"""Investigation reports as a person sees them: written from a real evaluation of drifted
samples, rendered by headless Chromium (scripts run, as in a browser), screenshots taken, and the
sections an on-call engineer needs checked for in what the page shows."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
import yaml
from PIL import Image

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.core import evaluate
from mlwatchdog.daemon.journal import Journal
from mlwatchdog.daemon.reports import ReportWriter
from mlwatchdog.demo import customers, write_batch
from mlwatchdog.rules import parse_config
from mlwatchdog.rules.schema import Reports
from mlwatchdog.sources.observe import Observer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed: `make test` installs it as root (apt-get install "
        "chromium)",
    ),
    pytest.mark.timeout(180),
]


def render(page: Path, screenshot: Path) -> str:
    """The text Chromium shows for `page` (after its scripts ran), and a screenshot of it."""
    assert CHROMIUM is not None
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=20000", "--window-size=1280,1800"]  # fmt: skip
    url = page.as_uri()
    subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=90,
                   check=True)  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90,
                         check=True).stdout  # fmt: skip
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def ink(screenshot: Path) -> float:
    """The share of pixels that are not (near) white: a blank page has none."""
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    return float((pixels < 230).mean())


@pytest.fixture
def report(tmp_path: Path) -> Any:
    """A report of the bundled rules.yaml's target on one minute of drifted samples."""
    rules = yaml.safe_load((ROOT / "rules.yaml").read_text())
    rules["sources"]["live"]["url"] = str(tmp_path / "live")
    rules["sources"]["training"]["url"] = str(ROOT / "examples/data/reference.parquet")
    config = parse_config(yaml.safe_dump(rules), "rules.yaml")
    target = config.targets[0]
    rng = np.random.default_rng(7)
    for seconds in range(0, 60, 5):
        at = NOW - timedelta(seconds=seconds)
        frame = customers(rng, 200, drifted=True)
        frame.insert(0, "timestamp", [at - timedelta(seconds=s) for s in rng.uniform(0, 5, 200)])
        write_batch(tmp_path / "live", frame, at)
    observer = Observer(config)
    observation = observer.observe(target, NOW)
    evaluation = evaluate(target, observation, None, NOW)
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"at": NOW.isoformat(), "target": target.name, "kind": "phase",
                    "phase": "degraded", "incident": "credit-model-20261125T120000Z"})  # fmt: skip
    writer = ReportWriter(
        Reports(path=str(tmp_path / "reports")),
        journal,
        AuditLog(tmp_path / "audit.jsonl"),
        observer,
        structlog.get_logger(),
    )
    alerts = [{"status": "firing", "labels": {"alertname": "CreditModelDrift"}}]
    info = writer.write(target, evaluation, observation, NOW, alerts)
    return tmp_path / "reports" / info.id, target


def test_mlwatchdogs_page_shows_the_decision_checks_columns_and_history(
    report: Any, tmp_path: Path
) -> None:
    folder, target = report
    shown = render(folder / "index.html", tmp_path / "index.png")
    for heading in ("Investigation of credit-model", "Decision", "Checks", "Drift per column",
                    "Metrics", "State history", "Actions", "Alerts"):  # fmt: skip
        assert heading in shown, heading
    for check in target.checks:
        assert check.name in shown
    for column in target.columns.all:
        assert column in shown
    # rules.yaml's drift checks have effect floors: each column's effect is shown with its floor
    assert "effect (floor)" in shown
    assert re.search(r"wasserstein \d\.\d+ \((>|&gt;)= 0\.1\)", shown), shown
    assert re.search(r"jensen_shannon \d\.\d+ \((>|&gt;)= 0\.05\)", shown), shown
    assert "degraded" in shown  # the state history
    assert "CreditModelDrift" in shown
    assert "Evidently data drift report" in shown
    assert ink(tmp_path / "index.png") > 0.02


def test_evidentlys_report_renders_its_drift_table(report: Any, tmp_path: Path) -> None:
    folder, target = report
    shown = render(folder / "evidently.html", tmp_path / "evidently.png")
    assert "Dataset Drift" in shown and "Data Drift Summary" in shown
    for column in target.columns.all:
        assert column in shown  # rendered by the report's scripts, not in the HTML as sent
    assert "Drifted Columns" in shown
    assert ink(tmp_path / "evidently.png") > 0.02
