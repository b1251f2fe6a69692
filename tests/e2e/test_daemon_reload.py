"""Config reload end to end: `mlwatchdog run` as a real process whose rules file the test edits.

With `reload_interval: 1s`: a file with a YAML error, then one with an unknown key, are refused
(the daemon keeps evaluating on its last good config, logs each error with its line, and
/metrics says mlwatchdog_config_last_reload_successful 0); a fixed file that drops a check and
adds a second target is applied (metric back to 1, the new target scheduled and evaluated, the
old target's incident kept); a file rewritten in place, paused half-written, fails once and is
applied once complete. With `reload_interval: 0s` nothing is polled, and SIGHUP reloads at once.
Files are replaced as kubectl and ConfigMaps do (a temporary file, then os.replace) except where
the test writes in place on purpose.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.daemon_process import (
    TARGET,
    DaemonProcess,
    Feeder,
    evaluations,
    is_ready,
    value,
    wait_for,
    write_config,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(180)

SECOND = "credit-model-b"
OK = "mlwatchdog_config_last_reload_successful"


def reloadable_config(tmp_path: Path, port: int, interval: str) -> tuple[Path, dict[str, Any]]:
    path = write_config(tmp_path, port)
    rules: dict[str, Any] = yaml.safe_load(path.read_text())
    rules["daemon"]["reload_interval"] = interval
    replace_file(path, dump(rules))
    return path, rules


def dump(rules: dict[str, Any]) -> str:
    return yaml.safe_dump(rules, sort_keys=False)


def replace_file(path: Path, text: str) -> None:
    """Write a temporary file, then rename it over `path` (what kubectl and ConfigMaps do)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def without_channel_mix_and_with_a_second_target(rules: dict[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = yaml.safe_load(dump(rules))  # a deep copy
    (target,) = changed["targets"]
    target["checks"] = [c for c in target["checks"] if c["name"] != "channel_mix"]
    target["trigger"] = "prediction_drift and feature_drift"
    second = yaml.safe_load(dump(target))
    second.update(name=SECOND, workload={"kind": "none"})
    changed["targets"].append(second)
    return changed


def reload_counts(daemon: DaemonProcess) -> tuple[float, float]:
    metrics = daemon.metrics()
    total = "mlwatchdog_config_reloads_total"
    return (
        value(metrics, total, result="success") or 0.0,
        value(metrics, total, result="failure") or 0.0,
    )


def wait_for_reload(daemon: DaemonProcess, what: str, success: bool, before: float) -> None:
    """Until the success (or failure) counter passes `before`, and the gauge agrees."""

    def done() -> bool:
        counts = reload_counts(daemon)
        passed = (counts[0] if success else counts[1]) > before
        return passed and value(daemon.metrics(), OK) == (1 if success else 0)

    wait_for(daemon, what, done, timeout=20)


def assert_watched(daemon: DaemonProcess, config: Path) -> None:
    (started,) = daemon.events("daemon started")
    assert started.get("config_file") == str(config), (
        "the daemon does not watch its rules file: `mlwatchdog run` must pass "
        "config_path to serve()"
    )


def state(daemon: DaemonProcess, name: str = TARGET) -> dict[str, Any]:
    found: dict[str, Any] = daemon.targets()[name]
    return found


def test_a_changed_file_is_reloaded_and_a_broken_one_is_refused(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config, rules = reloadable_config(tmp_path, port, "1s")
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    processes.append(daemon)
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=40)
    assert_watched(daemon, config)
    assert value(daemon.metrics(), OK) == 1
    assert reload_counts(daemon) == (0, 0)

    # An incident under way: its state must outlive every reload below.
    feeder.drift.set()
    incident = wait_for(daemon, "an incident", lambda: state(daemon)["incident"], timeout=30)

    # (a) A YAML error: refused, logged with its line; the target keeps being evaluated.
    good = dump(rules)
    replace_file(config, good.replace("targets:\n", "targets:\n- {name: [unclosed\n", 1))
    wait_for_reload(daemon, "a failed reload (YAML)", success=False, before=0)
    (failed,) = daemon.events("config reload failed")
    assert failed["file"] == str(config)
    assert len(failed["errors"]) == 1 and "not valid YAML" in failed["errors"][0]
    (error,) = daemon.events("config error")
    assert isinstance(error["line"], int) and error["line"] > 1
    assert f"{config}:{error['line']}:" in failed["errors"][0]
    after = evaluations(daemon)
    wait_for(daemon, "2 more evaluations", lambda: evaluations(daemon) >= after + 2, 20)

    # ... and a schema error (an unknown key), with the key's line.
    lines = good.splitlines()
    at = lines.index("daemon:") + 1
    replace_file(config, "\n".join([*lines[:at], "  bogus_setting: 1", *lines[at:]]) + "\n")
    wait_for_reload(daemon, "a failed reload (unknown key)", success=False, before=1)
    failed = daemon.events("config reload failed")[-1]
    (message,) = failed["errors"]
    assert message.startswith(f"{config}:{at + 1}: daemon.bogus_setting: unknown key")
    assert daemon.events("config error")[-1]["line"] == at + 1
    assert daemon.events("config reloaded") == []
    assert list(daemon.targets()) == [TARGET]
    assert state(daemon)["incident"]["id"] == incident["id"]
    after = evaluations(daemon)
    wait_for(daemon, "2 more evaluations", lambda: evaluations(daemon) >= after + 2, 20)

    # (b) Fixed, with changes: a check dropped from the target, a second target added.
    changed = without_channel_mix_and_with_a_second_target(rules)
    replace_file(config, dump(changed))
    wait_for_reload(daemon, "a successful reload", success=True, before=0)
    (reloaded,) = daemon.events("config reloaded")
    assert reloaded["added"] == [SECOND]
    assert reloaded["changed"] == [TARGET] and reloaded["removed"] == []
    kept = state(daemon)
    assert kept["incident"]["id"] == incident["id"]
    assert kept["incident"]["started_at"] == incident["started_at"]
    wait_for(
        daemon,
        "channel_mix gone from the state and /metrics",
        lambda: (
            "channel_mix" not in state(daemon)["checks"]
            and value(
                daemon.metrics(), "mlwatchdog_check_state", target=TARGET, check="channel_mix"
            )
            is None
        ),
        timeout=20,
    )
    wait_for(
        daemon,
        f"{SECOND} evaluated",
        lambda: value(daemon.metrics(), "mlwatchdog_evaluations_total", target=SECOND),
        timeout=20,
    )
    assert set(daemon.targets()) == {TARGET, SECOND}
    assert state(daemon, SECOND) is not None
    assert state(daemon)["incident"]["id"] == incident["id"]

    # (c) Rewritten in place, and paused half-written: that half fails to validate (the running
    # config stays), the whole file is then applied: the second target goes, with its gauges.
    text = dump(rules)
    half = text[: text.index("checks:")]
    with config.open("w") as out:
        out.write(half)
        out.flush()
        wait_for_reload(daemon, "a failed reload (half a file)", success=False, before=2)
        assert set(daemon.targets()) == {TARGET, SECOND}
        out.write(text[len(half) :])
    wait_for_reload(daemon, "the whole file reloaded", success=True, before=1)
    reloaded = daemon.events("config reloaded")[-1]
    assert reloaded["removed"] == [SECOND] and reloaded["added"] == []
    assert list(daemon.targets()) == [TARGET]
    metrics = daemon.metrics()
    for gauge in ("mlwatchdog_target_state", "mlwatchdog_check_state"):
        assert value(metrics, gauge, target=SECOND) is None, gauge
    assert value(metrics, "mlwatchdog_config_reloads_total", result="failure") >= 3
    assert (tmp_path / "state" / f"{SECOND}.json").exists()  # kept on disk
    assert state(daemon)["incident"]["id"] == incident["id"]
    after = evaluations(daemon)
    wait_for(daemon, "2 more evaluations", lambda: evaluations(daemon) >= after + 2, 20)

    code, _ = daemon.stop()
    assert code == 0
    assert "Traceback" not in daemon.text()
    assert feeder.error is None


def test_sighup_reloads_at_once_without_polling(
    tmp_path: Path, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    port = free_port()
    config, rules = reloadable_config(tmp_path, port, "0s")
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    processes.append(daemon)
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=40)
    assert_watched(daemon, config)

    replace_file(config, dump(without_channel_mix_and_with_a_second_target(rules)))
    time.sleep(3)  # more than enough for a poll, were there one
    assert daemon.events("config reloaded") == []
    assert list(daemon.targets()) == [TARGET]

    daemon.proc.send_signal(signal.SIGHUP)
    wait_for_reload(daemon, "a reload after SIGHUP", success=True, before=0)
    (reloaded,) = daemon.events("config reloaded")
    assert reloaded["added"] == [SECOND] and reloaded["changed"] == [TARGET]
    wait_for(
        daemon,
        f"{SECOND} evaluated",
        lambda: value(daemon.metrics(), "mlwatchdog_evaluations_total", target=SECOND),
        timeout=20,
    )
    assert daemon.proc.poll() is None

    code, _ = daemon.stop()
    assert code == 0
    assert "Traceback" not in daemon.text()
