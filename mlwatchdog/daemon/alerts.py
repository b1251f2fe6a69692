"""Alert-driven investigations: Grafana unified-alerting and Alertmanager webhooks.

Both send the Alertmanager shape: `{"status", "alerts": [{"status", "labels", "annotations",
"startsAt", ...}], "commonLabels", ...}` (Grafana adds `orgId`, `title`, `state`, `message` and
per-alert `values`, `dashboardURL`, `panelURL`). Each firing alert is matched to targets by its
labels (`targets[].alerts` in rules.yaml, else label `target` or `mlwatchdog_target` = the name);
every matched target is evaluated at once and gets an investigation report, whose URL is the
answer. Optionally each report is announced as a Grafana annotation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import Grafana

DEFAULT_LABELS = ("target", "mlwatchdog_target")


class Alert(BaseModel):
    """One alert of a webhook (unknown fields are kept, and ignored)."""

    model_config = ConfigDict(extra="allow")

    status: str = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None  # the webhook's own field names (camelCase)
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None


class AlertWebhook(BaseModel):
    """What Grafana's webhook contact point and Alertmanager's webhook receiver POST."""

    model_config = ConfigDict(extra="allow")

    version: str | None = None
    status: str | None = None
    receiver: str | None = None
    groupKey: str | None = None
    commonLabels: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    title: str | None = None  # Grafana
    alerts: list[Alert] = Field(default_factory=list)


def matches(target: Target, labels: dict[str, str]) -> bool:
    """Whether an alert with `labels` is about `target`."""
    rule = target.alerts
    if rule is None or not (rule.labels or rule.labels_re):
        return any(labels.get(key) == target.name for key in DEFAULT_LABELS)
    for key, value in rule.labels.items():
        if labels.get(key) != value:
            return False
    for key, pattern in rule.labels_re.items():
        if key not in labels or re.fullmatch(pattern, labels[key]) is None:
            return False
    return True


def matched_targets(targets: Iterable[Target], alerts: list[Alert]) -> dict[str, list[Alert]]:
    """Target name -> the firing alerts about it (resolved alerts investigate nothing)."""
    found: dict[str, list[Alert]] = {}
    targets = list(targets)
    for alert in alerts:
        if alert.status != "firing":
            continue
        for target in targets:
            if matches(target, alert.labels):
                found.setdefault(target.name, []).append(alert)
    return found


def annotate(
    grafana: Grafana, target: str, text: str, at: datetime, client: httpx.Client | None = None
) -> str:
    """Post a Grafana annotation; '' when done, else why not (never raises)."""
    headers = {"Authorization": f"Bearer {grafana.token.reveal()}"} if grafana.token else {}
    body = {
        "time": int(at.timestamp() * 1000),
        "tags": [*grafana.tags, f"target:{target}"],
        "text": text,
    }
    url = grafana.url.reveal().rstrip("/") + "/api/annotations"
    try:
        if client is not None:
            response = client.post(url, json=body, headers=headers)
        else:
            timeout = grafana.timeout.total_seconds()
            response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"Grafana unreachable: {exc}"
    if response.status_code >= 300:
        return f"Grafana answered {response.status_code}: {response.text[:200]}"
    return ""


def summary(alerts: list[Alert]) -> list[dict[str, Any]]:
    """The alerts as a report shows them."""
    return [
        {
            "status": a.status,
            "labels": a.labels,
            "startsAt": a.startsAt,
            "annotations": a.annotations,
        }
        for a in alerts
    ]
