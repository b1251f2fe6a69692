"""Which targets an incoming Grafana or Alertmanager alert investigates."""

from __future__ import annotations

import yaml

from mlwatchdog.daemon.alerts import Alert, AlertWebhook, matched_targets
from mlwatchdog.rules import Target, parse_config


def targets(*alert_rules: dict[str, object] | None) -> list[Target]:
    entries = []
    for i, rule in enumerate(alert_rules):
        entry = {
            "name": f"model-{i}",
            "samples": {"source": "live"},
            "reference": {
                "source": "live",
                "start": "2026-01-01T00:00Z",
                "end": "2026-01-02T00:00Z",
            },
            "columns": {"features": {"x": "numeric"}},
            "checks": [{"name": "drift", "type": "drift", "test": "ks", "threshold": 0.01}],
        }
        if rule is not None:
            entry["alerts"] = rule
        entries.append(entry)
    rules = {"sources": {"live": {"type": "files", "url": "/x"}}, "targets": entries}
    return parse_config(yaml.safe_dump(rules), "rules.yaml").targets


def firing(**labels: str) -> Alert:
    return Alert(status="firing", labels=labels)


def test_by_default_the_target_label_names_the_target() -> None:
    [plain] = targets(None)
    assert matched_targets([plain], [firing(target="model-0")]) == {
        "model-0": [firing(target="model-0")]
    }
    assert matched_targets([plain], [firing(mlwatchdog_target="model-0")])
    assert matched_targets([plain], [firing(target="model-1")]) == {}


def test_labels_must_all_match_exactly_and_regexes_fully() -> None:
    rule = {"labels": {"model": "fraud", "env": "prod"}, "labels_re": {"namespace": "models(-.*)?"}}
    [target] = targets(rule)
    assert matched_targets([target], [firing(model="fraud", env="prod", namespace="models-eu")])
    assert not matched_targets([target], [firing(model="fraud", env="prod", namespace="xmodels")])
    assert not matched_targets([target], [firing(model="fraud", namespace="models")])  # no env
    assert not matched_targets([target], [firing(target="model-0")])  # rules replace the default


def test_resolved_alerts_investigate_nothing_and_one_alert_can_match_several_targets() -> None:
    both = targets({"labels": {"team": "risk"}}, {"labels": {"team": "risk"}})
    resolved = Alert(status="resolved", labels={"team": "risk"})
    assert matched_targets(both, [resolved]) == {}
    assert sorted(matched_targets(both, [firing(team="risk")])) == ["model-0", "model-1"]


def test_grafana_and_alertmanager_payloads_parse_with_their_extra_fields() -> None:
    grafana = AlertWebhook.model_validate({
        "receiver": "mlwatchdog", "status": "firing", "orgId": 1, "state": "alerting",
        "alerts": [{"status": "firing", "labels": {"target": "model-0"}, "values": {"B": 0.03},
                    "dashboardURL": "https://grafana/d/x", "startsAt": "2026-11-25T11:00:00Z"}],
    })  # fmt: skip
    assert grafana.alerts[0].labels == {"target": "model-0"}
    alertmanager = AlertWebhook.model_validate({
        "version": "4", "status": "resolved", "groupKey": "{}:{}", "truncatedAlerts": 0,
        "alerts": [{"status": "resolved", "labels": {"target": "model-0"},
                    "endsAt": "2026-11-25T11:05:00Z", "fingerprint": "abc"}],
    })  # fmt: skip
    assert alertmanager.alerts[0].status == "resolved"
