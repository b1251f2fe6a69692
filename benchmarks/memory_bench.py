"""Memory a target holds in the daemon: RSS growth per target after a few evaluations each.

`python benchmarks/memory_bench.py --targets 240 --rounds 3` builds daemon_bench's targets (20
features, minute partitions, ~1,000-row windows, one shared reference), runs the daemon's own
`TargetRunner`s over them on a virtual clock (`--rounds` minutes after a first evaluation), and
prints the process's RSS growth per target. The targets run in two halves, one after the
other: the first half's growth includes what the process builds once (imports done lazily, the
shared reference, the exact-KS cache warming), the second half's is what one more target costs,
from which the RSS at 2,000 targets is estimated. `--trace` also prints tracemalloc's top
allocation sites. `--release` hands freed memory back after each half, as the daemon's timer does
(`mlwatchdog.daemon.memory`). Compare commits side by side: `PYTHONPATH=<checkout> python
<checkout>/benchmarks/...`.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
import daemon_bench  # a sibling module, not a package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=3, help="minutes after the first evaluation")
    parser.add_argument("--trace", action="store_true", help="tracemalloc's top allocation sites")
    parser.add_argument(
        "--release", action="store_true", help="release freed memory after each half, as the daemon"
    )
    args = parser.parse_args(argv)
    start = datetime(2026, 11, 25, 6, 10, 30, tzinfo=UTC)
    step = timedelta(minutes=1)
    with tempfile.TemporaryDirectory() as workdir:
        config = daemon_bench.prepare(
            Path(workdir), args.targets, daemon_bench.MINUTE_LAYOUT,
            start - 2 * step, start + args.rounds * step,
        )  # fmt: skip
        gc.collect()
        before = psutil.Process().memory_info().rss
        if args.trace:
            tracemalloc.start(8)
        runners, _ = daemon_bench.runners_for(config, start)
        half = len(runners) // 2
        halves = (runners[:half], runners[half:])
        grown = []  # RSS after each half's evaluations
        for group in halves:
            for k in range(args.rounds + 1):
                for runner in group:
                    runner.clock.now = start + k * step  # type: ignore[attr-defined]
                    if runner.run_once() is None:
                        raise SystemExit(f"{runner.target.name}: the evaluation failed")
            gc.collect()
            if args.release:
                from mlwatchdog.daemon.memory import release_freed_memory

                release_freed_memory()
            grown.append(psutil.Process().memory_info().rss)
        after = grown[-1]
        print(
            f"{args.targets} targets, {args.rounds + 1} evaluations each: RSS {before / 2**20:.0f}"
            f" -> {after / 2**20:.0f} MiB, {(after - before) / 1024 / args.targets:,.0f} KiB a "
            "target"
        )
        more = (grown[1] - grown[0]) / len(halves[1])  # bytes one more target costs
        at_2000 = after + (2000 - args.targets) * more
        print(
            f"the first {half} targets: {(grown[0] - before) / 1024 / half:,.0f} KiB a target; "
            f"the next {len(halves[1])}: {more / 1024:,.0f} KiB a target; so at 2,000 targets "
            f"about {at_2000 / 2**20:,.0f} MiB"
        )
        if args.trace:
            for stat in tracemalloc.take_snapshot().statistics("lineno")[:25]:
                print(stat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
