"""The reports as a person sees them after an incident the daemon's own runner went through on a
virtual clock (tests/integration/bundle_scenario.py: calm, drift, a dry-run rollback, escalation):
a report written on each decision without being asked, its plots drawn (headless Chromium's
screenshot has the plots' colours in it, the page the expected SVG elements), the same page built
by `mlwatchdog report` from a bundle and from a replay timeline, the index and the landing page
served over real HTTP, and hostile column names shown as text."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from mlwatchdog.core import DataStatus, Observation, evaluate
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.detectors import Reference
from mlwatchdog.replay import list_bundles
from mlwatchdog.report.page import ReportPage, render_report
from mlwatchdog.rules import parse_config
from mlwatchdog.rules.schema import Http
from tests.e2e.daemon_process import COMMAND
from tests.integration.bundle_scenario import TARGET, rules, run_incident
from tests.integration.test_report_render import CHROMIUM, render
from tests.servers.limited_http import thread_server

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make servers)"),
    pytest.mark.timeout(600),
]

# The plots' colours (mlwatchdog/report/svg.py), as Chromium paints them.
REFERENCE = (0x4C, 0x72, 0xB0)
CURRENT = (0xDD, 0x6E, 0x0F)
FIRING = (0xFB, 0xD4, 0xD2)
PENDING = (0xFF, 0xF0, 0xC2)
MARKER = (0x6A, 0x1B, 0x9A)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Daemon]]:
    tmp_path = tmp_path_factory.mktemp("incident")
    service = run_incident(tmp_path)  # waits for the decisions' reports
    yield tmp_path, service


def pixels(screenshot: Path, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    """How many pixels of the screenshot have this colour."""
    image = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    return int((np.abs(image - np.array(colour)).max(axis=2) <= tolerance).sum())


def screenshot(page: Path, out: Path, height: int = 4200) -> None:
    assert CHROMIUM is not None
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size=1280,{height}", f"--screenshot={out}", page.as_uri()],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip


def elements(html: str, css: str) -> int:
    """How many SVG elements have this class (e.g. "line reference")."""
    return len(re.findall(rf'class="{re.escape(css)}"', html))


def test_every_decision_writes_a_report_with_its_plots(
    incident: tuple[Path, Daemon], tmp_path: Path
) -> None:
    root, service = incident
    # Beside the state folder, unasked: state_dir is <root>/state.
    assert service.reports.directory == root / "reports"
    written = service.reports.list()
    decided = [r for r in written if r.trigger in ("decision", "escalation")]
    assert any("rollback to prior (dry-run)" in r.decision for r in decided), written
    assert any(r.trigger == "escalation" for r in decided), written
    assert [r.created_at for r in written] == sorted((r.created_at for r in written), reverse=True)
    rollback = next(r for r in decided if "rollback" in r.decision)
    page = root / "reports" / rollback.id / "index.html"
    html = page.read_text()

    # KS: both ECDFs and D for each of feature_drift's columns; chi-square: category bars.
    assert elements(html, "line reference") >= 5 and elements(html, "line current") >= 5
    assert elements(html, "ks-d") >= 5
    assert elements(html, "bar reference") >= 3 and elements(html, "bar current") >= 3
    # The timeline: one plot per check, its threshold, pending then firing, the decision.
    assert elements(html, "line value") == 3
    assert elements(html, "threshold") == 3
    assert elements(html, "band pending") >= 1 and elements(html, "band firing") >= 1
    assert elements(html, "marker") >= 3  # the rollback on each check's timeline
    assert "drift_share 0.3" in html and "p &lt; alpha 0.01" in html

    shown = render(page, tmp_path / "page.png")
    headings = (
        "Investigation of credit-model",
        "Decision",
        "Checks",
        "Timeline",
        "Reference against current, per column",
        "Drift per column",
        "State history",
    )
    for heading in headings:
        assert heading in shown, heading
    assert "rollback to prior (dry-run)" in shown
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shown)  # one time format
    assert not re.search(r"\d\d:\d\d:\d\d\.\d+|\+00:00", shown), "another time format shown"

    image = tmp_path / "report.png"
    screenshot(page, image)
    # Painted, not only in the markup: each plot's colours cover a visible area.
    assert pixels(image, REFERENCE) > 3000 and pixels(image, CURRENT) > 3000
    assert pixels(image, FIRING) > 2000 and pixels(image, PENDING) > 500
    assert pixels(image, MARKER) > 100


def test_mlwatchdog_report_builds_the_page_from_a_bundle_and_from_a_timeline(
    incident: tuple[Path, Daemon], tmp_path: Path
) -> None:
    root, service = incident
    bundles = [b for b in list_bundles(str(root / "bundles")) if "decision-rollback" in b]
    assert bundles
    out = tmp_path / "bundle.html"
    done = subprocess.run([COMMAND, "report", bundles[0], "--out", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "Investigation of credit-model" in html and "from bundle " in html
    assert elements(html, "line reference") >= 5 and elements(html, "ks-d") >= 5
    assert elements(html, "line value") == 3 and elements(html, "band firing") >= 1
    assert elements(html, "marker") >= 3
    screenshot(out, tmp_path / "bundle.png", height=2400)
    assert pixels(tmp_path / "bundle.png", CURRENT) > 3000

    # A replay timeline: the runner's rows are replay's format (replay.timeline_rows).
    timeline = tmp_path / "timeline.parquet"
    pd.DataFrame(service.runners[TARGET].timeline()).to_parquet(timeline)
    config = tmp_path / "rules.yaml"
    config.write_text(yaml.safe_dump(rules(tmp_path), sort_keys=False))
    out = tmp_path / "timeline.html"
    done = subprocess.run(
        [COMMAND, "report", str(timeline), "--config", str(config), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "rollback" in html and elements(html, "line value") == 3
    assert elements(html, "band firing") >= 1 and elements(html, "marker") >= 3
    assert "No per-column plots" in html
    # A timeline of another target is refused with what it has.
    done = subprocess.run(
        [COMMAND, "report", str(timeline), "--config", str(config), "--target", "nope"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "credit-model" in done.stderr


def test_the_index_and_the_landing_page_list_what_exists(incident: tuple[Path, Daemon]) -> None:
    _, service = incident
    written = service.reports.list()
    with thread_server(create_app(service), Http(), None) as server:
        base = f"http://127.0.0.1:{server.port}"
        index = httpx.get(f"{base}/reports/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        ids = re.findall(rf'href="({TARGET}-[^"/]+)/"', index.text)
        assert ids == [r.id for r in written]  # every report, newest first
        for report in written:
            assert httpx.get(f"{base}/reports/{report.id}/").status_code == 200
        landing = httpx.get(f"{base}/")
        assert landing.status_code == 200
        text = landing.text
        assert TARGET in text and "escalated" in text
        assert f'href="reports/{written[0].id}/"' in text  # its latest report
        for link in ('href="reports/"', 'href="docs"', 'href="metrics"'):
            assert link in text


HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


def test_hostile_column_names_are_shown_as_text(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    columns = {HOSTILE: "numeric", "<b>kind</b>": "categorical"}
    reference = pd.DataFrame(
        {HOSTILE: rng.normal(0, 1, 500), "<b>kind</b>": rng.choice(["<i>a</i>", "b"], 500)}
    )
    current = pd.DataFrame(
        {HOSTILE: rng.normal(1, 1, 300), "<b>kind</b>": rng.choice(["<i>a</i>", "b"], 300)}
    )
    config = parse_config(
        yaml.safe_dump(
            {
                "version": 1,
                "sources": {"s": {"type": "files", "url": str(tmp_path), "timestamp_column": None}},
                "targets": [
                    {
                        "name": "t",
                        "workload": {"kind": "none"},
                        "samples": {"source": "s", "window": "1m"},
                        "reference": {"source": "s"},
                        "columns": {"features": columns},
                        "checks": [
                            {"name": "num", "type": "drift", "test": "ks", "columns": [HOSTILE]},
                            {"name": "cat", "type": "drift", "test": "chi2",
                             "columns": ["<b>kind</b>"]},
                        ],
                        "trigger": "any",
                    }
                ],
            }
        ),
        "rules.yaml",
    )  # fmt: skip
    target = config.targets[0]
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    observation = Observation(
        "t", now, samples=current, samples_status=DataStatus.OK,
        reference=Reference(reference, columns=list(columns), kinds=list(columns.values())),
        reference_status=DataStatus.OK,
    )  # fmt: skip
    evaluation = evaluate(target, observation, None, now)
    page = tmp_path / "page.html"
    page.write_text(render_report(ReportPage(target, now, evaluation, observation)))
    html = page.read_text()
    assert "<img src=x" not in html and "<b>kind" not in html and "<i>a" not in html
    assert elements(html, "line reference") == 1 and elements(html, "bar current") == 2
    shown = render(page, tmp_path / "page.png")
    assert "onerror" in shown and "<b>kind</b>" in shown.replace("&lt;", "<").replace("&gt;", ">")
    dom = subprocess.run(
        [CHROMIUM or "", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=90, check=True,
    ).stdout  # fmt: skip
    # Had the <img> been markup, its onerror would have renamed the page.
    assert "<title>mlwatchdog: t at 2026-11-25T12:00:00Z</title>" in dom
