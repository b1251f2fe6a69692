"""First bundles of many targets sharing one reference: CPU and disk per bundle.

`PYTHONPATH=<checkout> python benchmarks/bundle_bench.py --targets 100` records one incident with
the daemon's runner (tests/integration/bundle_scenario.py), swaps in a reference of 10,000 rows x
20 columns, and writes one bundle per target as each target's first evaluation does: the rows are
read again from their parquet file (as the observer re-reads the reference source), checked
against the fingerprint and copied. Run it from a checkout before and after a change, side by
side (PYTHONPATH choosing the code measured). Prints CPU per bundle and the disk the bundles use.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mlwatchdog.detectors import Reference  # noqa: E402
from mlwatchdog.replay import list_bundles, load_bundle  # noqa: E402
from mlwatchdog.replay.bundle import BundleWriter  # noqa: E402
from mlwatchdog.rules.schema import Bundles  # noqa: E402
from tests.integration.bundle_scenario import run_incident  # noqa: E402


def disk_bytes(folder: Path) -> int:
    """Blocks used under `folder`, each file (inode) counted once, as `du` does."""
    seen, total = set(), 0
    for path in folder.rglob("*"):
        info = path.lstat()
        if path.is_file() and info.st_ino not in seen:
            seen.add(info.st_ino)
            total += info.st_blocks * 512
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        run_incident(work / "incident")
        recorded = load_bundle(list_bundles(str(work / "incident" / "bundles"))[-1]).recorded
        rng = np.random.default_rng(0)
        rows = pd.DataFrame(rng.normal(size=(10_000, 20)), columns=[f"x{i}" for i in range(20)])
        source = work / "reference.parquet"
        rows.to_parquet(source)
        reference = Reference(rows)
        observation = replace(recorded.observation, reference=reference)

        def read_again() -> pd.DataFrame:
            return pd.read_parquet(source)

        lazy = hasattr(BundleWriter, "_reference_bytes")  # rows asked for only when needed
        log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
        writer = BundleWriter(Bundles(keep=10 * args.targets), str(work / "bundles"), log)
        started = time.process_time()
        for n in range(args.targets):
            recorded_n = replace(
                recorded,
                target=recorded.target.model_copy(update={"name": f"model-{n}"}),
                observation=observation,
                reference_frame=read_again if lazy else read_again(),
            )
            writer.write(recorded_n, "healthy")
        cpu = (time.process_time() - started) / args.targets
        used = disk_bytes(work / "bundles")
        copied = sum(1 for b in list_bundles(str(work / "bundles")) if
                     os.path.exists(os.path.join(b, "reference.parquet")))  # fmt: skip
        print(
            f"{args.targets} first bundles of one reference (10,000 x 20): "
            f"{1000 * cpu:.1f} ms of CPU a bundle, {used / 2**20:.1f} MiB on disk "
            f"({used / args.targets / 2**20:.2f} MiB a bundle), {copied} with reference.parquet"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
