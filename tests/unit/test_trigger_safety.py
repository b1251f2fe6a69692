"""Triggers that cannot hurt: a check without data is unknown (Kleene's three-valued logic), so it
never makes a trigger hold, and a trigger that would hold with no check firing is refused by
`check` and by config reload with its file and line."""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Mapping
from pathlib import Path

import pytest
import structlog
import yaml

from mlwatchdog.core import CheckState, DataStatus, MetricReading, Observation, Phase
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.rules import Target, config_issues, parse_trigger
from mlwatchdog.rules.trigger import TriggerSyntaxError
from tests.unit.test_core_scenarios import FOR, at, make_target, phases, rollbacks, run
from tests.unit.test_reload import config, metric, rules, target
from tests.unit.test_rules import VALID, edit, issues_of, line_of

NAMES = ["a", "b", "c"]
REFUSED = "a trigger must not hold when no check fires"
UNKNOWN_STATUSES = [DataStatus.NO_DATA, DataStatus.ERROR, DataStatus.STALE]

# ------------------------------------------------------------------------ three-valued logic


@pytest.mark.parametrize(
    ("text", "firing", "holds"),
    [
        # The safe way to exclude: only a check known to be quiet lets `not` through.
        ("drift and not maintenance", {"drift": True, "maintenance": False}, True),
        ("drift and not maintenance", {"drift": True, "maintenance": None}, False),
        ("drift and not maintenance", {"drift": True}, False),  # not in the map: unknown
        ("drift and not maintenance", {"drift": True, "maintenance": True}, False),
        ("drift and not not maintenance", {"drift": True, "maintenance": None}, False),
        # One firing check settles an `or`; one unknown check leaves an `and` unknown.
        ("drift or errors", {"drift": None, "errors": True}, True),
        ("drift and errors", {"drift": True, "errors": None}, False),
        # A part that is settled whatever the unknown check does is not unknown.
        ("drift and not (maintenance and errors)", {"drift": True, "maintenance": False}, True),
        ("drift and not (maintenance or errors)", {"drift": True, "maintenance": False}, False),
    ],
)
def test_a_check_without_data_is_unknown(
    text: str, firing: Mapping[str, bool | None], holds: bool
) -> None:
    trigger = parse_trigger(text, ["drift", "errors", "maintenance"])
    assert trigger.holds(firing) is holds


def random_trigger(rng: random.Random, depth: int) -> str:
    """An and/or/not expression over NAMES."""
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(NAMES)
    kind = rng.choice(["not", "and", "or"])
    if kind == "not":
        return f"not {random_trigger(rng, depth - 1)}"
    parts = [random_trigger(rng, depth - 1) for _ in range(rng.randint(2, 3))]
    return "(" + f" {kind} ".join(parts) + ")"


def classical(text: str, values: Mapping[str, bool]) -> bool:
    """Python's own two-valued reading of the expression, independent of the trigger module."""
    return bool(eval(text, {"__builtins__": {}}, dict(values)))  # our own generated text


def test_no_trigger_holds_while_no_check_fires_and_unsafe_ones_are_refused() -> None:
    rng = random.Random(12)
    refused = accepted = 0
    for _ in range(400):
        text = random_trigger(rng, 3)
        if classical(text, dict.fromkeys(NAMES, False)):
            with pytest.raises(TriggerSyntaxError, match=REFUSED):
                parse_trigger(text, NAMES)
            refused += 1
            continue
        trigger = parse_trigger(text, NAMES)
        accepted += 1
        for values in itertools.product([True, False, None], repeat=len(NAMES)):
            firing = dict(zip(NAMES, values, strict=True))
            holds = trigger.holds(firing)
            unknown = [n for n, v in firing.items() if v is None]
            completions = [
                {**firing, **dict(zip(unknown, filled, strict=True))}
                for filled in itertools.product([True, False], repeat=len(unknown))
            ]
            if not unknown:  # with every check known, it is plain boolean logic
                assert holds == classical(text, firing), (text, firing)
            if holds:  # it holds only when it would whatever the unknown checks are
                assert all(classical(text, c) for c in completions), (text, firing)
            if True not in values:  # quiet or unknown checks alone never make it hold
                assert not holds, (text, firing)
    assert refused > 50 and accepted > 50  # both kinds were exercised


@pytest.mark.parametrize(
    ("text", "culprit", "quiet"),
    [
        ("not errors", "not errors", "errors"),
        ("not a or b", "not a", "a"),
        ("a or not a", "not a", "a"),
        ("(not a and b) or not c", "not c", "c"),
        ("not (a and b)", "not (a and b)", "a and b"),
    ],
)
def test_a_trigger_that_holds_with_no_check_firing_is_refused_with_the_reason(
    text: str, culprit: str, quiet: str
) -> None:
    with pytest.raises(TriggerSyntaxError) as caught:
        parse_trigger(text, ["a", "b", "c", "errors"])
    message = str(caught.value)
    assert message.startswith(f"{REFUSED}, and {text!r} does: ")
    assert f"`{culprit}` would roll back whenever `{quiet}` is quiet" in message
    assert "write the checks that must fire" in message


@pytest.mark.parametrize(
    "text", ["a and not b", "a or (not a and b)", "not not a", "not (a or b) and c", "any", "all"]
)
def test_triggers_that_need_a_firing_check_are_accepted(text: str) -> None:
    assert parse_trigger(text, NAMES).source == text


# ------------------------------------------------------------------- check and config reload


@pytest.mark.parametrize(
    ("trigger", "culprit"),
    [
        ("not errors", "not errors"),
        ("not mix or drift", "not mix"),
        ("drift or not drift", "not drift"),
    ],
)
def test_check_refuses_the_trigger_at_its_line(trigger: str, culprit: str) -> None:
    text = edit(VALID, ("trigger: drift and (mix or errors)", f"trigger: {trigger}"))
    [issue] = issues_of(text)
    assert (issue.line, issue.path) == (line_of(text, "trigger:"), "targets[0].trigger")
    assert issue.message.startswith(REFUSED)
    assert f"`{culprit}` would roll back" in issue.message


def test_check_of_a_file_refuses_the_trigger(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(edit(VALID, ("trigger: drift and (mix or errors)", "trigger: not errors")))
    [issue] = config_issues(path)
    assert str(issue).startswith(f"{path}:{line_of(path.read_text(), 'trigger:')}: ")
    assert REFUSED in str(issue)


def test_reload_refuses_the_trigger_and_keeps_the_running_config(tmp_path: Path) -> None:
    data = rules(
        target("a", metric("errors", 0.05), metric("maintenance", 0.5), trigger="errors"),
        state_dir=str(tmp_path / "state"),
        audit_log=str(tmp_path / "audit.jsonl"),
        reload_interval="0s",
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
    daemon = Daemon(config(data), log, config_path=path)

    data["targets"][0]["trigger"] = "not maintenance"
    path.write_text(yaml.safe_dump(data))
    assert daemon.reload() is False
    assert daemon.config.target("a").trigger == "errors"
    [error] = daemon.reload_errors
    line = line_of(path.read_text(), "trigger: not maintenance")
    assert error.startswith(f"{path}:{line}: targets[0].trigger: {REFUSED}")


# -------------------------------------------------------------------- through the decision core


def excluded_target() -> Target:
    """errors above 0.05 rolls back, unless maintenance (a flag metric) is on."""
    checks = [
        {"name": "errors", "type": "metric", "source": "prom", "query": "errors", "above": 0.05},
        {"name": "maintenance", "type": "metric", "source": "prom", "query": "m", "above": 0.5},
    ]
    return make_target({"checks": checks, "trigger": "errors and not maintenance"})


def observations(maintenance: list[MetricReading]) -> list[Observation]:
    """Errors breach from the first evaluation; maintenance reads as given."""
    errors = MetricReading(DataStatus.OK, 0.2)
    return [
        Observation("credit-model", at(i), metrics={"errors": errors, "maintenance": reading})
        for i, reading in enumerate(maintenance)
    ]


@pytest.mark.parametrize("status", UNKNOWN_STATUSES)
def test_an_exclusion_without_data_never_lets_the_trigger_roll_back(status: DataStatus) -> None:
    target = excluded_target()
    ticks = run(target, observations([MetricReading(status, None, "no answer")] * 18))

    fired = at(0) + FOR
    assert all(t.state.checks["errors"].state is CheckState.FIRING for t in ticks if t.at >= fired)
    assert rollbacks(ticks) == []  # it used to roll back at `fired`: no data counted as quiet
    assert phases(ticks) == [Phase.DEGRADED]


def test_an_exclusion_rolls_back_once_its_data_says_quiet() -> None:
    quiet, unknown = MetricReading(DataStatus.OK, 0.0), MetricReading(DataStatus.NO_DATA)
    target = excluded_target()
    ticks = run(target, observations([unknown] * 9 + [quiet] * 3))
    [rollback] = rollbacks(ticks)
    assert rollback.at == at(9)  # the first evaluation that knows maintenance is off


def test_an_exclusion_that_fires_keeps_the_trigger_from_holding() -> None:
    target = excluded_target()
    ticks = run(target, observations([MetricReading(DataStatus.OK, 1.0)] * 12))
    assert rollbacks(ticks) == []
    assert ticks[-1].state.checks["maintenance"].state is CheckState.FIRING
