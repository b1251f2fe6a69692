"""The command line and the logs as a person on call meets them (issue 15): `--version`, one JSON
document on stdout with `--format json` from every command that prints, `status` within 80
columns, `1h30m` durations, `--set` errors naming the key, a busy port as one line and its own
exit status, and transitions as their own log events while routine evaluations stay out of info.
"""

from __future__ import annotations

import json
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon_process import (
    COMMAND,
    RULES,
    TARGET,
    DaemonProcess,
    Feeder,
    environment,
    evaluations,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(240)

EXIT_STARTUP = 4  # the README's exit status table: the HTTP port in use or not allowed


def mlwatchdog(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
        env=environment(**env),
    )  # fmt: skip


def json_of(done: subprocess.CompletedProcess[str]) -> Any:
    """stdout parsed as one JSON document (fails if anything else is on it)."""
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_version_prints_the_installed_package_version() -> None:
    done = mlwatchdog("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"mlwatchdog {metadata.version('mlwatchdog')}\n"


def test_a_busy_port_is_one_line_naming_mlwatchdog_port_and_its_own_exit_status(
    tmp_path: Path, processes: list[DaemonProcess]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path, port)
        daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
        processes.append(daemon)
        code = daemon.proc.wait(60)
    output = daemon.text()
    assert code == EXIT_STARTUP, output
    [line] = output.splitlines()
    assert line.startswith("error: cannot listen on ") and f":{port}: " in line
    assert "in use" in line and "MLWATCHDOG_PORT" in line
    assert not (tmp_path / "state").exists()  # nothing started: no evaluation, no state


def test_check_with_format_json_lists_files_and_problems(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES.read_text().replace("window: 1m ", "window: 1h30 ", 1))
    done = mlwatchdog("check", str(RULES), str(broken), "--format", "json")
    assert done.returncode == 1, done.stderr
    valid, invalid = json.loads(done.stdout)
    assert valid["file"] == str(RULES) and valid["valid"] is True and valid["targets"] == 1
    assert invalid["valid"] is False
    [problem] = invalid["problems"]
    assert problem["path"] == "targets[0].samples.window" and problem["line"] > 1
    assert "'1h30' is not a duration" in problem["message"]


def test_a_bad_duration_option_is_refused_before_anything_is_sent() -> None:
    for args in (
        ["pause", TARGET, "--for", "1h30", "--url", "http://127.0.0.1:9"],  # nobody listens
        ["replay", "--from", "2026-01-01", "--to", "2026-01-02", "--step", "1h30"],
    ):
        done = mlwatchdog(*args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "'1h30' is not a duration" in " ".join(done.stderr.split())


def test_a_compound_duration_in_rules_yaml(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.read_text().replace("cooldown: 10m ", "cooldown: 1h30m ", 1))
    [checked] = json_of(mlwatchdog("check", str(rules), "--format", "json"))
    assert checked["valid"] is True, checked


def test_the_daemon_logs_transitions_at_info_and_the_commands_print_json(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    rules = yaml.safe_load(config.read_text())
    rules["daemon"]["log_level"] = "info"  # what users run: routine evaluations not logged
    config.write_text(yaml.safe_dump(rules, sort_keys=False))
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")  # stdout a file: JSON logs
    processes.append(daemon)
    wait_for(daemon, "3 evaluations", lambda: evaluations(daemon) >= 3 or None, timeout=60)

    # Drift: each change of a check's state is its own info event, with target, check, from, to.
    feeder.drift.set()

    def fired() -> list[dict[str, Any]]:
        return [e for e in daemon.events("check state changed") if e["to"] == "firing"]

    wait_for(daemon, "a check firing in the log", fired, timeout=60)
    changes = daemon.events("check state changed")
    first = changes[0]
    assert first["level"] == "info" and first["target"] == TARGET
    assert first["from"] == "inactive" and first["to"] == "pending"
    assert first["check"] in {c["name"] for c in rules["targets"][0]["checks"]}
    assert first["status"] == "ok" and first["value"] >= first["threshold"]
    # One event per change: each check's events chain (from is the previous to), never repeat.
    for check in {e["check"] for e in changes}:
        steps = [(e["from"], e["to"]) for e in changes if e["check"] == check]
        assert steps[0][0] == "inactive" and all(a != b for a, b in steps), steps
        assert all(steps[i][1] == steps[i + 1][0] for i in range(len(steps) - 1)), steps
    moved = daemon.events("target state changed")
    assert [(e["from"], e["to"]) for e in moved][:2] == [(None, "healthy"), ("healthy", "degraded")]
    assert moved[1]["level"] == "info" and moved[1]["incident"].startswith(TARGET)
    # Routine evaluations are not at info: the log holds changes, not one line per evaluation.
    logs = daemon.logs()
    assert evaluations(daemon) >= 6 and not daemon.events("evaluated")
    assert {e["level"] for e in logs} <= {"info", "warning"}
    assert len(logs) < 40, [e["event"] for e in logs]

    url = f"http://127.0.0.1:{port}"
    # status: one JSON document; at 80 columns every line fits and each check is on one line.
    listed = json_of(mlwatchdog("status", "--url", url, "--format", "json"))
    [target] = listed
    assert target["name"] == TARGET and target["phase"] != "healthy"
    assert json_of(mlwatchdog("status", "--url", url, "--output", "json"))[0]["name"] == TARGET
    table = mlwatchdog("status", "--url", url, COLUMNS="80")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, table.stdout
    assert any(line.startswith(f"{TARGET}: ") and " since " in line for line in lines)
    for check in target["checks"]:
        assert any(check["name"] in line.split() for line in lines), (check, table.stdout)

    # A person's commands and resolve: the daemon's answer as JSON.
    paused = json_of(
        mlwatchdog("pause", TARGET, "--for", "1h30m", "--url", url, "--format", "json")
    )
    assert f"{TARGET} paused for 90m" in paused["message"]  # 1h30m, in the daemon's spelling
    resumed = json_of(mlwatchdog("resume", TARGET, "--url", url, "--format", "json"))
    assert "message" in resumed
    resolved = json_of(mlwatchdog("resolve", target["incident"], "--url", url, "--format", "json"))
    assert isinstance(resolved["results"], list) and resolved["message"]
    assert daemon.events("paused") and daemon.events("resumed")  # logged when done

    # replay over the run's own samples, with a compound duration in --set; and its bundles.
    timeline = tmp_path / "timeline.csv"
    replayed = json_of(mlwatchdog(
        "replay", "--config", str(config), "--from", moved[0]["timestamp"][:19],
        "--to", moved[1]["timestamp"][:19], "--step", "2s", "--set", "for=1h30m",
        "--out", str(timeline), "--format", "json", cwd=tmp_path,
    ))  # fmt: skip
    assert replayed["steps"] >= 2 and replayed["out"] == str(timeline) and timeline.exists()
    assert replayed["decisions"] == []  # `for` of 90 minutes: nothing fires in seconds
    assert [a["alarms"] for a in replayed["drift_alarms"]] == [0]  # and no drift alarm either
    bundles = json_of(
        mlwatchdog("replay", "--bundle", str(tmp_path / "bundles"), "--format", "json")
    )
    assert bundles and all(b["differences"] == [] for b in bundles)
    assert {"recorded", "replayed"} <= set(bundles[0]["decisions"])

    # A bad --set says where and what, as `check` does for a file.
    bad = mlwatchdog(
        "replay", "--config", str(config), "--from", "2026-01-01T00:00", "--to",
        "2026-01-01T00:01", "--set", "checks.feature_drift.treshold=0.2", "--set", "for=1h30",
        cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stdout == "", bad.stdout
    assert (
        "--set: checks.feature_drift.treshold: unknown key 'treshold'; did you mean 'threshold'?"
        in bad.stderr
    )
    assert "--set: for: '1h30' is not a duration" in bad.stderr


@pytest.mark.parametrize("how", ["--log-format", "MLWATCHDOG_LOG_FORMAT"])
def test_console_logs_for_people(tmp_path: Path, processes: list[DaemonProcess], how: str) -> None:
    """Console lines by the option or the environment (stdout is a file here, so without
    either the logs would be JSON lines, as the test above reads them)."""
    port = free_port()
    config = write_config(tmp_path, port)
    if how == "--log-format":
        daemon = DaemonProcess(config, port, tmp_path / "daemon.log", "--log-format", "console")
    else:
        env = environment(MLWATCHDOG_LOG_FORMAT="console")
        daemon = DaemonProcess(config, port, tmp_path / "daemon.log", env=env)
    processes.append(daemon)
    wait_for(daemon, "a state change", lambda: "target state changed" in daemon.text(), 60)
    lines = daemon.text().splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    [changed] = [line for line in lines if "target state changed" in line]
    assert "[info" in changed and f"target={TARGET}" in changed and "to=healthy" in changed
