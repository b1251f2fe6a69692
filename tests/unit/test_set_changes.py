"""`replay --set KEY=VALUE` (`parse_changes` + `changed_target`): values read as YAML, durations
in every spelling rules.yaml takes, and problems worded as `mlwatchdog check` words a file's:
`--set: key.path: what to change`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mlwatchdog.replay import BundleError, changed_target, parse_changes
from mlwatchdog.rules import Target, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def target() -> Target:
    return load_config(ROOT / "rules.yaml").targets[0]


def changed(target: Target, *assignments: str) -> Target:
    return changed_target(target, parse_changes(list(assignments)))


def test_compound_durations_and_checks_by_name(target: Target) -> None:
    new = changed(target, "for=1h30m", "checks.feature_drift.threshold=0.2", "cooldown=1d2h")
    assert new.for_ == timedelta(minutes=90) and new.cooldown == timedelta(hours=26)
    [drift] = [c for c in new.checks if c.name == "feature_drift"]
    assert drift.threshold == 0.2


@pytest.mark.parametrize(
    ("assignments", "expected"),
    [
        (
            ["checks.feature_drift.treshold=0.2"],
            "--set: checks.feature_drift.treshold: unknown key 'treshold'; "
            "did you mean 'threshold'?",
        ),
        (["for=1h30"], "--set: for: '1h30' is not a duration; write e.g."),
        (["rollback.dry_run=maybe"], "--set: rollback.dry_run: Input should be a valid boolean"),
        (["checks.nope.threshold=1"], "--set: checks.nope: no check 'nope' in target"),
        (["checks.feature_drift=1"], "--set: checks.feature_drift: give a key of the check"),
        (["for=["], "--set: for: '[': "),
    ],
)
def test_a_bad_change_names_its_key(target: Target, assignments: list[str], expected: str) -> None:
    with pytest.raises(BundleError) as refused:
        changed(target, *assignments)
    assert str(refused.value).startswith(expected), str(refused.value)


def test_every_bad_change_is_listed(target: Target) -> None:
    with pytest.raises(BundleError) as refused:
        changed(target, "treshold=1", "checks.feature_drift.threshold=abc")
    lines = str(refused.value).splitlines()
    assert lines[0] == "--set: 2 problem(s):"
    assert sorted(line.split(": ")[1] for line in lines[1:]) == [
        "checks.feature_drift.threshold",
        "treshold",
    ]
