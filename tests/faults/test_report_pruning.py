"""Investigation reports written at the same time (alerts arriving together, the API) with a
small `keep`: none fails, and pruning never deletes a report that is still being written; what it
deletes is only ever older than the `keep` newest."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import structlog
import yaml

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.core import Observation, evaluate
from mlwatchdog.daemon.journal import Journal
from mlwatchdog.daemon.reports import ReportWriter
from mlwatchdog.rules import parse_config
from mlwatchdog.rules.schema import Reports

ROOT = Path(__file__).resolve().parents[2]
KEEP = 2
THREADS = 8
WRITES = 25  # per thread


def report_time(name: str) -> str:
    return name.rsplit("-", 1)[-1]  # <target>-<UTC time>


def test_concurrent_reports_with_a_small_keep_all_succeed_and_only_old_ones_go(
    tmp_path: Path,
) -> None:
    rules = yaml.safe_load((ROOT / "rules.yaml").read_text())
    rules["sources"]["training"]["url"] = str(ROOT / "examples/data/reference.parquet")
    config = parse_config(yaml.safe_dump(rules), "rules.yaml")
    target = config.targets[0]
    now = datetime.now(UTC)
    evaluation = evaluate(target, Observation(target.name, now), None, now)
    folder = tmp_path / "reports"
    log = structlog.wrap_logger(structlog.PrintLogger(open("/dev/null", "w")))  # noqa: SIM115
    writer = ReportWriter(
        Reports(path=str(folder), keep=KEEP),
        Journal(tmp_path / "journal.jsonl"),
        AuditLog(tmp_path / "audit.jsonl"),
        None,
        log,
    )
    errors: list[BaseException] = []
    gone: list[str] = []  # reports deleted although fewer than KEEP newer ones existed
    start = threading.Barrier(THREADS)

    def hammer() -> None:
        start.wait()
        for _ in range(WRITES):
            try:
                info = writer.write(target, evaluation, None, datetime.now(UTC))
            except BaseException as exc:  # every failure is the finding
                errors.append(exc)
                continue
            if (folder / info.id / "index.html").is_file():
                continue
            # Pruned already: only right if KEEP newer reports are published.
            newer = [p for p in folder.iterdir() if report_time(p.name) > report_time(info.id)]
            if len([p for p in newer if not p.name.startswith(".")]) < KEEP:
                gone.append(info.id)

    threads = [threading.Thread(target=hammer) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, f"{len(errors)} report(s) failed, e.g. {errors[0]!r}"
    assert not gone, f"pruned while fewer than {KEEP} newer reports existed: {gone}"
    # What is left: the KEEP newest, whole; nothing half written behind.
    left = sorted(p.name for p in folder.iterdir())
    assert len(left) == KEEP, left
    assert [r.id for r in writer.list()] == sorted(left, key=report_time, reverse=True)
    for name in left:
        assert {p.name for p in (folder / name).iterdir()} == {"index.html", "report.json"}
