"""The daemon's log: what changed in an evaluation becomes its own event, once per change
(`check_changes`), and both log formats scrub secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog

from mlwatchdog.core import CheckRecord, CheckResult, CheckState, DataStatus, Evaluation
from mlwatchdog.core.model import TargetState
from mlwatchdog.daemon.logs import LogFormat, configure_logging
from mlwatchdog.daemon.runner import check_changes
from mlwatchdog.rules.secret import Redactor

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def state(**checks: tuple[CheckState, DataStatus]) -> TargetState:
    records = {name: CheckRecord(state=s, status=status) for name, (s, status) in checks.items()}
    return TargetState("credit", checks=records, evaluated_at=NOW)


def evaluation(after: TargetState, **results: DataStatus) -> Evaluation:
    found = tuple(
        CheckResult(name, status, value=0.4, threshold=0.3, reason=f"{name}: {status}")
        for name, status in results.items()
    )
    return Evaluation(after, (), found)


OK, NO_DATA, ERROR = DataStatus.OK, DataStatus.NO_DATA, DataStatus.ERROR
INACTIVE, PENDING, FIRING = CheckState.INACTIVE, CheckState.PENDING, CheckState.FIRING


def test_a_check_state_change_is_one_info_event_with_from_and_to() -> None:
    before = state(drift=(INACTIVE, OK), mix=(PENDING, OK))
    after = state(drift=(PENDING, OK), mix=(PENDING, OK))
    [(level, event, fields)] = check_changes(before, evaluation(after, drift=OK, mix=OK))
    assert (level, event) == ("info", "check state changed")
    assert fields["check"] == "drift" and (fields["from"], fields["to"]) == ("inactive", "pending")
    assert fields["value"] == 0.4 and fields["threshold"] == 0.3 and fields["status"] == "ok"


def test_nothing_is_logged_when_nothing_changed() -> None:
    same = state(drift=(FIRING, OK), mix=(INACTIVE, ERROR))
    assert check_changes(same, evaluation(same, drift=OK, mix=ERROR)) == []


def test_missing_data_warns_once_and_its_return_is_info() -> None:
    before = state(drift=(INACTIVE, OK))
    missing = state(drift=(INACTIVE, NO_DATA))
    [(level, event, fields)] = check_changes(before, evaluation(missing, drift=NO_DATA))
    assert (level, event, fields["status"]) == ("warning", "check data missing", "no_data")
    assert fields["reason"] == "drift: no_data"
    assert check_changes(missing, evaluation(missing, drift=NO_DATA)) == []  # still missing
    failing = state(drift=(INACTIVE, ERROR))  # another way of missing: said again
    [(level, _, fields)] = check_changes(missing, evaluation(failing, drift=ERROR))
    assert (level, fields["status"]) == ("warning", "error")
    [(level, event, fields)] = check_changes(failing, evaluation(before, drift=OK))
    assert (level, event, fields["missing"]) == ("info", "check data back", "error")


def test_the_first_evaluation_logs_breaches_and_missing_data_only() -> None:
    after = state(calm=(INACTIVE, OK), hot=(PENDING, OK), blind=(INACTIVE, ERROR))
    events = check_changes(None, evaluation(after, calm=OK, hot=OK, blind=ERROR))
    assert [(e[1], e[2]["check"]) for e in events] == [
        ("check state changed", "hot"),
        ("check data missing", "blind"),
    ]


@pytest.fixture
def fresh_structlog() -> Iterator[None]:
    """configure_logging is global: put structlog's defaults and the root logger back after the
    test (their stdout here is pytest's capture, closed once the test ends)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("fresh_structlog")
@pytest.mark.parametrize("log_format", list(LogFormat))
def test_both_formats_scrub_secrets(
    log_format: LogFormat, capsys: pytest.CaptureFixture[str]
) -> None:
    log = configure_logging("info", Redactor(["hunter2-secret"]), log_format)
    log.debug("routine", detail="not shown at info")
    try:
        raise RuntimeError("cannot reach postgres://app:hunter2-secret@db/models")
    except RuntimeError:
        log.exception("evaluation failed", target="credit")
    log.info("check state changed", target="credit", check="drift", to="pending")
    out = capsys.readouterr().out
    assert "hunter2-secret" not in out and "***" in out
    assert "routine" not in out
    lines = out.splitlines()
    if log_format is LogFormat.JSON:
        events = [json.loads(line) for line in lines if line.startswith("{")]
        assert [e["event"] for e in events] == ["evaluation failed", "check state changed"]
        assert events[1]["level"] == "info" and events[1]["to"] == "pending"
    else:
        assert not any(line.startswith("{") for line in lines)
        [changed] = [line for line in lines if "check state changed" in line]
        assert "target=credit" in changed and "to=pending" in changed
        assert any("Traceback" in line for line in lines)  # the exception, as text


@pytest.mark.usefixtures("fresh_structlog")
@pytest.mark.parametrize("log_format", list(LogFormat))
def test_libraries_log_the_daemons_way(
    log_format: LogFormat, capsys: pytest.CaptureFixture[str]
) -> None:
    """A library's warning (urllib3 quoting the URL it retries, APScheduler, uvicorn) comes out
    in the daemon's format on stdout, secrets masked; its info chatter stays out."""
    configure_logging("info", Redactor(["hunter2-secret"]), log_format)
    library = logging.getLogger("urllib3.connectionpool")
    library.warning("Retrying after connection broken: https://app:hunter2-secret@db/models")
    library.info("Starting new HTTPS connection (1): db")
    try:
        raise OSError("cannot reach s3://key:hunter2-secret@bucket")
    except OSError:
        logging.getLogger("apscheduler.executors.default").exception("Job raised an exception")
    captured = capsys.readouterr()
    out = captured.out
    assert captured.err == ""
    assert "hunter2-secret" not in out and "***" in out
    assert "Starting new HTTPS connection" not in out
    if log_format is LogFormat.JSON:
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert [(e["logger"], e["level"]) for e in events] == [
            ("urllib3.connectionpool", "warning"),
            ("apscheduler.executors.default", "error"),
        ]
        assert "cannot reach s3://key:***@bucket" in events[1]["exception"]
    else:
        assert "Retrying after connection broken" in out and "Traceback" in out
