"""The daemon's memory under hostile and sloppy callers: RSS before and after each input of
tests/servers/hostile.py, sent to a real `mlwatchdog run` process (the e2e harness's config with
credentials, the KServe sink and a target reading it, live samples written every second).

    .venv/bin/python benchmarks/hostile_bench.py

Prints a markdown table for benchmarks/README.md ("Hostile inputs").
tests/e2e/test_hostile_inputs.py runs the same inputs and asserts the bound (RSS within 100 MiB
of the baseline after each).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.* (the harness and the hostile callers)

from daemon_bench import code_version, machine  # noqa: E402

from tests.e2e.daemon_process import DaemonProcess, Feeder, is_ready  # noqa: E402
from tests.servers.hostile import MIB, TOKEN, attack, hostile_config  # noqa: E402
from tests.servers.ports import free_port  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mlwatchdog-hostile-") as folder:
        workdir = Path(folder)
        port = free_port()
        config = hostile_config(workdir, port)
        feeder = Feeder(workdir / "live")
        feeder.backfill()
        feeder.start()
        daemon = DaemonProcess(config, port, workdir / "daemon.log", token=TOKEN)
        try:
            while not is_ready(daemon):
                if daemon.proc.poll() is not None:
                    raise SystemExit(daemon.text())
            load = os.getloadavg()
            steps = attack(daemon, config, log=lambda line: print(line, file=sys.stderr))
            code, _ = daemon.stop()
        finally:
            daemon.close()
            feeder.stopped.set()
            feeder.join(10)
    baseline = steps[0].rss
    print(f"Measured on {machine()}; {code_version()}; load average {load[0]:.2f} at the start.")
    print()
    print("| input | the daemon's answer | RSS after | change |")
    print("|---|---|---:|---:|")
    for step in steps:
        change = "" if step is steps[0] else f"{(step.rss - baseline) / MIB:+.0f} MiB"
        print(f"| {step.name} | {step.outcome} | {step.rss / MIB:.0f} MiB | {change} |")
    print()
    print(f"The daemon exited {code} on SIGTERM afterwards.")


if __name__ == "__main__":
    main()
