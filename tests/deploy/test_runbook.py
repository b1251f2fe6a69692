"""docs/runbook.md is what the alerts link to: every alert of the PrometheusRule has a
`runbook_url` whose anchor is a section of the runbook (GitHub's heading anchors), and the
runbook's own links between sections resolve."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.manifests import BASE, DASHBOARD, one, render

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
# The repository's address: pyproject.toml declares none, so the runbook says how to change it.
RUNBOOK_URL = "https://github.com/mlwatchdog/mlwatchdog/blob/main/docs/runbook.md"


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    return {anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def alerts() -> list[dict[str, object]]:
    rule = one(render(BASE), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: str(r["alert"]))
def test_every_alert_links_to_its_section_of_the_runbook(rule: dict[str, object]) -> None:
    annotations = rule["annotations"]
    assert isinstance(annotations, dict)
    url = annotations["runbook_url"]
    page, _, section = url.partition("#")
    assert page == RUNBOOK_URL
    assert section == anchor(str(rule["alert"])), "the section is named after the alert"
    assert section in anchors(), f"docs/runbook.md has no section #{section}"


def test_the_runbooks_links_between_sections_resolve() -> None:
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text(encoding="utf-8"))
    assert links
    assert set(links) <= anchors()


def test_the_dashboard_links_to_the_runbook() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert RUNBOOK_URL in [link["url"] for link in board["links"]]


def test_anchor_follows_github() -> None:
    assert anchor("MlwatchdogAbsent") == "mlwatchdogabsent"
    assert anchor("Health of the watchdog") == "health-of-the-watchdog"
    assert anchor("`mlwatchdog check`, then fix") == "mlwatchdog-check-then-fix"
