"""`mlwatchdog check` end to end, like `promtool check rules`: the installed command on real files.

Exit 0 with a one-line summary for a valid file; exit 1 listing every problem as
`file:line: key.path: what to change`; unreadable files are reported, never a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules.yaml"
WINDOW = "window: 1m                  # each"  # the samples window in rules.yaml
COMMAND = shutil.which("mlwatchdog") or str(Path(sys.executable).parent / "mlwatchdog")


def check(
    *files: Path | str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MLWATCHDOG_PORT"}
    return subprocess.run(
        [COMMAND, "check", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**environ, **(env or {})},
    )


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def broken_copy(tmp_path: Path, *changes: tuple[str, str]) -> Path:
    text = RULES.read_text()
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} is not unique in rules.yaml"
        text = text.replace(old, new)
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    return path


def assert_clean_failure(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "SUCCESS" not in done.stdout


def test_bundled_rules_are_ok_in_one_short_summary() -> None:
    done = check(RULES)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        f"Checking {RULES}",
        "  SUCCESS: 1 target(s), 3 check(s), 2 source(s)",
    ]


def test_broken_copy_lists_every_problem_with_file_line_and_key_path(tmp_path: Path) -> None:
    path = broken_copy(
        tmp_path,
        ("        threshold: 0.01\n        correction: bh", "        treshold: 0.01\n"
         "        correction: bh"),
        (WINDOW, "window: 1 minute  # each"),
        ("    cooldown: 10m", "    cooldown: 10m\n    cooldown: 20m"),
        ("    url: examples/data/reference.parquet",
         "    url: examples/data/reference.parquet\n    compression: zstd"),
    )  # fmt: skip
    text = path.read_text()
    done = check(path)
    assert_clean_failure(done)
    report = done.stderr
    assert f"Checking {path}" in report
    assert "FAILED: 4 problem(s)" in report
    expected = [
        (
            f"{path}:{line_of(text, 'treshold')}: targets[0].checks[0].treshold: ",
            "did you mean 'threshold'?",
        ),
        (
            f"{path}:{line_of(text, 'window: 1 minute')}: targets[0].samples.window: ",
            "'1 minute' is not a duration",
        ),
        (
            f"{path}:{line_of(text, 'cooldown: 20m')}: targets[0].cooldown: ",
            "'cooldown' appears twice",
        ),
        (
            f"{path}:{line_of(text, 'compression')}: sources.training.compression: ",
            "unknown key 'compression'",
        ),
    ]
    lines = [line.strip() for line in report.splitlines()]
    for prefix, message in expected:
        matching = [line for line in lines if line.startswith(prefix)]
        assert len(matching) == 1, f"no line starting {prefix!r} in:\n{report}"
        assert message in matching[0]


def test_cross_reference_problems_are_listed_with_lines(tmp_path: Path) -> None:
    path = broken_copy(
        tmp_path,
        ("      source: live\n", "      source: livee\n"),
        ("columns: [channel, region]", "columns: [channel, country]"),
        ("trigger: prediction_drift and", "trigger: prediction_drifts and"),
    )
    text = path.read_text()
    done = check(path)
    assert_clean_failure(done)
    assert "FAILED: 3 problem(s)" in done.stderr
    for line, key, message in [
        (line_of(text, "source: livee"), "targets[0].samples.source", "no source named 'livee'"),
        (line_of(text, "country"), "targets[0].checks[1].columns", "'country' is not declared"),
        (line_of(text, "trigger:"), "targets[0].trigger", "['prediction_drifts']"),
    ]:
        assert f"{path}:{line}: {key}: " in done.stderr
        assert message in done.stderr


def test_unset_environment_variable_is_named(tmp_path: Path) -> None:
    path = broken_copy(tmp_path, ("url: .demo/live", "url: ${LIVE_BUCKET}/live"))
    done = check(path)
    assert_clean_failure(done)
    line = line_of(path.read_text(), "LIVE_BUCKET")
    assert f"{path}:{line}: sources.live.url: environment variable LIVE_BUCKET is not set" in (
        done.stderr
    )
    assert check(path, env={"LIVE_BUCKET": "s3://bucket"}).returncode == 0


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = broken_copy(tmp_path, ("    interval: 10s", "    interval: 10s: often"))
    done = check(path)
    assert_clean_failure(done)
    assert f"{path}:{line_of(path.read_text(), '10s: often')}: " in done.stderr
    assert "not valid YAML" in done.stderr


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_unreadable_file_exits_1_with_a_clear_message(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "rules.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    done = check(path)
    assert_clean_failure(done)
    assert f"{path}: " in done.stderr
    assert "cannot read the rules file" in done.stderr
    reason = {"missing": "No such file", "directory": "directory", "binary": "not UTF-8"}[kind]
    assert reason in done.stderr


def test_several_files_are_each_reported_and_any_failure_fails(tmp_path: Path) -> None:
    broken = broken_copy(tmp_path, (WINDOW, "window: 1 minute  # each"))
    done = check(RULES, broken)
    assert done.returncode == 1
    assert f"Checking {RULES}\n  SUCCESS:" in done.stdout
    assert f"Checking {broken}\n  FAILED: 1 problem(s):" in done.stderr
    assert "Traceback" not in done.stderr
    assert check(RULES, RULES).returncode == 0


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # Billion laughs: a few hundred bytes whose aliases expand to over a million values (it took
    # seconds and hundreds of MB before; at 9 levels, minutes and gigabytes).
    bomb = ["l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    bomb += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 6)]
    path = tmp_path / "bomb.yaml"
    path.write_text(RULES.read_text() + "\n".join(bomb) + "\n")
    started = time.monotonic()
    done = check(path)
    assert time.monotonic() - started < 30  # the process start included
    assert_clean_failure(done)
    line = line_of(path.read_text(), "l4: &l4")
    assert f"{path}:{line}: (top): YAML aliases expand to more than 100,000 values" in done.stderr
    assert "FAILED: 1 problem(s)" in done.stderr


def test_a_trigger_that_holds_with_no_check_firing_is_refused(tmp_path: Path) -> None:
    path = broken_copy(
        tmp_path,
        ("trigger: prediction_drift and (feature_drift or channel_mix)",
         "trigger: prediction_drift or not channel_mix"),
    )  # fmt: skip
    done = check(path)
    assert_clean_failure(done)
    line = line_of(path.read_text(), "trigger:")
    assert f"{path}:{line}: targets[0].trigger: a trigger must not hold when no check fires" in (
        done.stderr
    )
    assert "`not channel_mix` would roll back whenever `channel_mix` is quiet" in done.stderr


def test_a_template_entry_says_how_many_targets_it_expanded_to(tmp_path: Path) -> None:
    path = broken_copy(
        tmp_path,
        ("  - name: credit-model\n",
         "  - for_each: [{region: eu}, {region: us}, {region: apac}]\n"
         "    name: credit-model-{{region}}\n"),
    )  # fmt: skip
    done = check(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"Checking {path}",
        "  SUCCESS: 3 target(s), 9 check(s), 2 source(s)",
        "    targets[0] 'credit-model-{{region}}': for_each expanded to 3 target(s)",
    ]
    broken = path.read_text().replace("{region: us}", "{regio: us}")
    path.write_text(broken)
    done = check(path)
    assert_clean_failure(done)
    assert f"{path}:{line_of(broken, 'regio: us')}: targets[0].for_each[1]: for_each[1] " in (
        done.stderr
    )
