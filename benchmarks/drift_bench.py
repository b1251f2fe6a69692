"""Drift-test benchmark: mlwatchdog vs a scipy/numpy per-column loop, evidently 0.7, alibi-detect
and the numpy floor, side by side in one process.

    .venv/bin/python benchmarks/drift_bench.py [--quick] [--markdown] [--profile]

For each shape (columns x reference rows x current rows, float64 normal data, some current columns
shifted by 0.1 sd) it times one drift check of a current window against a reference:

* mlwatchdog: a `Reference` built once outside the timing (sorted columns, PSI quantile bins);
  timed `ref.test(cur, "ks")` + `ref.test(cur, "psi")` (by default a window this large is sorted
  and tested on one thread per CPU, in chunks of columns), the same on one thread (`workers=1`),
  the same with the window prepared once, and each test alone.
* scipy loop: `scipy.stats.ks_2samp` per column (auto method), and the same plus a numpy PSI loop
  (`np.histogram` of the current column on reference quantile edges computed outside the timing).
* evidently: `Report([DataDriftPreset(num_method=...)])` with "ks" and "psi", run once per shape.
* alibi-detect: `KSDrift(ref).predict(cur)` when `import alibi_detect` works (`make bench-alibi`).
* the floor: `np.sort(cur, axis=0)` plus `np.searchsorted` of each sorted current column into its
  pre-sorted reference column, the least any exact KS statistic must do.

Each shape is also checked once: mlwatchdog's KS statistics must equal scipy's exactly, its
p-values to 1e-9 relative, its PSI the numpy loop's; evidently's KS p-values are compared too.
The exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from mlwatchdog.detectors import Reference
from mlwatchdog.detectors.ks import kstwo_sf

FloatArray = NDArray[np.float64]

PSI_BINS = 10
SHIFTED_SHARE = 0.1  # share of the current columns shifted (default; --shifted-share)
SHIFT = 0.1  # in standard deviations
PVALUE_RTOL = 1e-9

# The targets of the issue, checked at the first shape.
TARGET_SHAPE = (50, 100_000, 10_000)
TARGET_FLOOR_RATIO = 2.0  # mlwatchdog KS+PSI at most this many times the floor
TARGET_VS_SCIPY = 15.0  # at least this many times faster than the scipy KS + numpy PSI loop
TARGET_VS_EVIDENTLY = 100.0  # ... and than evidently's KS report + PSI report

FLOOR = "numpy floor (sort + searchsorted)"
MLW_BOTH = "mlwatchdog KS+PSI"
MLW_ONE_PREPARE = "mlwatchdog KS+PSI, one prepare"
MLW_ONE_THREAD = "mlwatchdog KS+PSI, one thread (workers=1)"
MLW_KS = "mlwatchdog KS"
MLW_PSI = "mlwatchdog PSI"
SCIPY_KS = "scipy ks_2samp loop (KS)"
SCIPY_BOTH = "scipy KS + numpy PSI loop"
EVIDENTLY_KS = "evidently Report, ks"
EVIDENTLY_PSI = "evidently Report, psi"
EVIDENTLY_BOTH = "evidently ks + psi (sum)"
ALIBI_KS = "alibi-detect KSDrift (KS)"
PVALUES = "  of which KS p-values (mlwatchdog kstwo_sf)"
SCIPY_PVALUES = "  scipy kstwo.sf on the same statistics"


@dataclass(frozen=True)
class Shape:
    columns: int
    n_reference: int
    n_current: int

    @property
    def label(self) -> str:
        return f"F={self.columns} x {self.n_reference:,} x {self.n_current:,}"


SHAPES = (Shape(*TARGET_SHAPE), Shape(200, 50_000, 5_000), Shape(10, 1_000, 1_000))


@dataclass
class Row:
    shape: Shape
    method: str
    seconds: float
    repeats: int
    note: str = ""


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    failed: bool = False
    setup: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ data


def make_data(
    shape: Shape, shifted_share: float = SHIFTED_SHARE, seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Standard normal reference and current; the first `shifted_share` of the current columns
    shifted by +0.1 (columns are independent, so which ones does not matter)."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(shape.n_reference, shape.columns))
    current = rng.normal(size=(shape.n_current, shape.columns))
    current[:, : round(shifted_share * shape.columns)] += SHIFT
    return reference, current


# ---------------------------------------------------------------------------------- timing


def measure(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> tuple[float, Any]:
    """Median wall time of `repeats` calls (garbage collection off while timing), last result."""
    if warmup:
        fn()
    times: list[float] = []
    result: Any = None
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return statistics.median(times), result


# --------------------------------------------------------------------------------- methods


def floor_method(reference: FloatArray) -> Callable[[FloatArray], list[Any]]:
    """The floor: sort the current columns, binary-search them in the sorted reference columns."""
    sorted_ref = np.sort(reference, axis=0)
    columns = [np.ascontiguousarray(sorted_ref[:, j]) for j in range(reference.shape[1])]

    def run(current: FloatArray) -> list[Any]:
        cur = np.sort(current, axis=0)
        return [np.searchsorted(col, cur[:, j]) for j, col in enumerate(columns)]

    return run


def scipy_ks_loop(reference: FloatArray, current: FloatArray) -> tuple[FloatArray, FloatArray]:
    statistic = np.empty(reference.shape[1])
    pvalue = np.empty(reference.shape[1])
    for j in range(reference.shape[1]):
        res = stats.ks_2samp(reference[:, j], current[:, j])
        statistic[j], pvalue[j] = float(res.statistic), float(res.pvalue)
    return statistic, pvalue


@dataclass(frozen=True)
class NumpyPSI:
    """PSI per column by np.histogram on reference quantile edges (edges and reference counts are
    computed once, outside the timing, as mlwatchdog's Reference caches them); outer bins open,
    an empty bin counts half an observation, bins empty on both sides left out."""

    edges: list[FloatArray]
    ref_counts: list[NDArray[np.int64]]

    @classmethod
    def build(cls, reference: FloatArray, bins: int = PSI_BINS) -> NumpyPSI:
        levels = np.arange(1, bins) / bins
        edges, counts = [], []
        for j in range(reference.shape[1]):
            inner = np.unique(np.quantile(reference[:, j], levels))
            full = np.concatenate([[-np.inf], inner, [np.inf]])
            edges.append(full)
            counts.append(np.histogram(reference[:, j], full)[0])
        return cls(edges, counts)

    def __call__(self, current: FloatArray) -> FloatArray:
        out = np.empty(current.shape[1])
        for j in range(current.shape[1]):
            a = self.ref_counts[j].astype(np.float64)
            b = np.histogram(current[:, j], self.edges[j])[0].astype(np.float64)
            used = (a > 0) | (b > 0)
            a, b = a[used], b[used]
            p = np.where(a == 0, 0.5 / a.sum(), a / a.sum())
            q = np.where(b == 0, 0.5 / b.sum(), b / b.sum())
            out[j] = np.sum((p - q) * np.log(p / q))
        return out


def evidently_available() -> bool:
    try:
        import evidently  # noqa: F401
    except ImportError:
        return False
    return True


class EvidentlyRunner:
    """evidently 0.7's public Report API with DataDriftPreset for numeric columns."""

    def __init__(self, reference: FloatArray, current: FloatArray) -> None:
        from evidently import DataDefinition

        self.names = [f"f{j}" for j in range(reference.shape[1])]
        self.definition = DataDefinition(numerical_columns=self.names)
        self.reference_frame = pd.DataFrame(reference, columns=self.names)
        self.current_frame = pd.DataFrame(current, columns=self.names)

    def reference_dataset(self) -> Any:
        from evidently import Dataset

        return Dataset.from_pandas(self.reference_frame, data_definition=self.definition)

    def runner(self, method: str) -> Callable[[], Any]:
        """Timed: the current window to a Dataset, then the report. The reference Dataset is
        built outside the timing, as mlwatchdog's Reference is."""
        from evidently import Dataset, Report
        from evidently.presets import DataDriftPreset

        reference = self.reference_dataset()

        def run() -> Any:
            current = Dataset.from_pandas(self.current_frame, data_definition=self.definition)
            return Report([DataDriftPreset(num_method=method)]).run(current, reference)

        return run

    def scores(self, snapshot: Any) -> FloatArray:
        """Per-column drift scores (p-value for ks, PSI for psi) from the ValueDrift metrics."""
        found = {}
        for metric in json.loads(snapshot.json())["metrics"]:
            if metric["config"]["type"] == "evidently:metric_v2:ValueDrift":
                found[metric["config"]["column"]] = float(metric["value"])
        return np.array([found[name] for name in self.names])


def warm_up_evidently() -> None:
    """One tiny report per method first, so lazy imports and registries are not timed."""
    rng = np.random.default_rng(1)
    small = EvidentlyRunner(rng.normal(size=(200, 2)), rng.normal(size=(100, 2)))
    for method in ("ks", "psi"):
        small.runner(method)()


def alibi_version() -> str | None:
    try:
        import alibi_detect  # noqa: F401
    except ImportError:
        return None
    return metadata.version("alibi-detect")


# ------------------------------------------------------------------------------ the bench


def bench_shape(
    shape: Shape,
    repeats: int,
    scipy_repeats: int,
    use_alibi: bool,
    shifted_share: float,
    outcome: Outcome,
) -> None:
    reference, current = make_data(shape, shifted_share)
    add = outcome.rows.append

    start = time.perf_counter()
    ref = Reference(reference)
    ref.quantile_bins(PSI_BINS)
    build = time.perf_counter() - start
    outcome.setup.append(
        f"{shape.label}: Reference(reference) + quantile_bins({PSI_BINS}) "
        f"built once in {build:.3f} s (not in the timings)"
    )

    floor = floor_method(reference)
    seconds, _ = measure(lambda: floor(current), repeats)
    add(Row(shape, FLOOR, seconds, repeats))

    def both() -> tuple[Any, Any]:
        return ref.test(current, "ks"), ref.test(current, "psi")

    def one_prepare() -> tuple[Any, Any]:
        window = ref.prepare(current)
        return ref.test(window, "ks"), ref.test(window, "psi")

    seconds, (ks, psi_result) = measure(both, repeats)
    add(Row(shape, MLW_BOTH, seconds, repeats))
    seconds, _ = measure(one_prepare, repeats)
    add(Row(shape, MLW_ONE_PREPARE, seconds, repeats))
    seconds, _ = measure(
        lambda: (ref.test(current, "ks", workers=1), ref.test(current, "psi", workers=1)), repeats
    )
    add(Row(shape, MLW_ONE_THREAD, seconds, repeats))
    seconds, _ = measure(lambda: ref.test(current, "ks"), repeats)
    add(Row(shape, MLW_KS, seconds, repeats))
    seconds, _ = measure(lambda: ref.test(current, "psi"), repeats)
    add(Row(shape, MLW_PSI, seconds, repeats))

    regime = "exact" if max(shape.n_reference, shape.n_current) <= 10_000 else "asymp"
    if regime == "asymp":
        # What the asymptotic p-values alone cost: mlwatchdog's (numpy Smirnov sums where scipy
        # loops in C per column) and scipy's own kstwo.sf, which the scipy loop pays.
        m, n = shape.n_reference, shape.n_current
        en = np.full(shape.columns, float(round(m * n / (m + n))))
        seconds, _ = measure(lambda: kstwo_sf(ks.statistic, en), repeats)
        add(Row(shape, PVALUES, seconds, repeats))
        seconds, _ = measure(lambda: stats.kstwo.sf(ks.statistic, en), repeats)
        add(Row(shape, SCIPY_PVALUES, seconds, repeats))
    seconds, (statistic, pvalue) = measure(lambda: scipy_ks_loop(reference, current), scipy_repeats)
    add(Row(shape, SCIPY_KS, seconds, scipy_repeats, f"auto -> {regime}"))
    numpy_psi = NumpyPSI.build(reference)
    seconds, (_, psi_loop) = measure(
        lambda: (scipy_ks_loop(reference, current), numpy_psi(current)), scipy_repeats
    )
    add(Row(shape, SCIPY_BOTH, seconds, scipy_repeats))

    check(
        shape, ks.statistic, ks.pvalue, statistic, pvalue, psi_result.statistic, psi_loop, outcome
    )

    if evidently_available():
        runner = EvidentlyRunner(reference, current)
        ks_seconds, ks_snapshot = measure(runner.runner("ks"), 1, warmup=False)
        add(Row(shape, EVIDENTLY_KS, ks_seconds, 1))
        psi_seconds, _ = measure(runner.runner("psi"), 1, warmup=False)
        add(Row(shape, EVIDENTLY_PSI, psi_seconds, 1))
        add(Row(shape, EVIDENTLY_BOTH, ks_seconds + psi_seconds, 1))
        compare_pvalues(shape, "evidently ks", runner.scores(ks_snapshot), ks.pvalue, outcome)

    if use_alibi:
        from alibi_detect.cd import KSDrift

        detector = KSDrift(reference, p_val=0.05)

        def alibi() -> Any:
            return detector.predict(current, return_p_val=True, return_distance=True)

        seconds, prediction = measure(alibi, scipy_repeats)
        add(Row(shape, ALIBI_KS, seconds, scipy_repeats))
        alibi_p = np.asarray(prediction["data"]["p_val"], dtype=np.float64)
        gap = float(np.max(np.abs(alibi_p - ks.pvalue) / np.maximum(ks.pvalue, 1e-300)))
        outcome.checks.append(
            f"{shape.label}: alibi-detect p-values vs mlwatchdog: max relative gap {gap:.1e} "
            "(informational; alibi picks its own KS method)"
        )


def check(
    shape: Shape,
    statistic: FloatArray,
    pvalue: FloatArray,
    scipy_statistic: FloatArray,
    scipy_pvalue: FloatArray,
    psi_ours: FloatArray,
    psi_loop: FloatArray,
    outcome: Outcome,
) -> None:
    same = bool(np.array_equal(statistic, scipy_statistic))
    outcome.checks.append(
        f"{shape.label}: KS statistics {'equal' if same else 'DIFFER from'} scipy's"
    )
    outcome.failed |= not same
    compare_pvalues(shape, "scipy", scipy_pvalue, pvalue, outcome)
    ok = bool(np.allclose(psi_ours, psi_loop, rtol=PVALUE_RTOL, atol=0))
    gap = relative_gap(psi_ours, psi_loop)
    outcome.checks.append(
        f"{shape.label}: PSI vs the numpy loop: max relative gap {gap:.1e} "
        f"({'ok' if ok else 'FAILED'}, rtol {PVALUE_RTOL:g})"
    )
    outcome.failed |= not ok


def compare_pvalues(
    shape: Shape, name: str, theirs: FloatArray, ours: FloatArray, outcome: Outcome
) -> None:
    ok = bool(np.allclose(ours, theirs, rtol=PVALUE_RTOL, atol=0))
    outcome.checks.append(
        f"{shape.label}: KS p-values vs {name}: max relative gap {relative_gap(ours, theirs):.1e} "
        f"({'ok' if ok else 'FAILED'}, rtol {PVALUE_RTOL:g})"
    )
    outcome.failed |= not ok


def relative_gap(ours: FloatArray, theirs: FloatArray) -> float:
    scale = np.maximum(np.abs(theirs), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(ours - theirs) / scale))


# -------------------------------------------------------------------------------- report


def seconds_of(rows: list[Row], shape: Shape, method: str) -> float | None:
    return next((r.seconds for r in rows if r.shape == shape and r.method == method), None)


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["shape", "method", "median s", "runs", "x floor", "mlwatchdog KS+PSI faster by"]
    body = []
    for row in rows:
        floor = seconds_of(rows, row.shape, FLOOR)
        ours = seconds_of(rows, row.shape, MLW_BOTH)
        method = f"{row.method} ({row.note})" if row.note else row.method
        body.append(
            [
                row.shape.label,
                method,
                f"{row.seconds:.4f}" if row.seconds < 10 else f"{row.seconds:.2f}",
                str(row.repeats),
                f"{row.seconds / floor:.1f}" if floor else "",
                f"{row.seconds / ours:.1f}x" if ours else "",
            ]
        )
    return header, body


def print_table(rows: list[Row], markdown: bool) -> None:
    header, body = table(rows)
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---", "---", "---:", "---:", "---:", "---:"]) + "|")
        for line in body:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(x) for x in column) for column in zip(header, *body, strict=True)]
    right = {2, 3, 4, 5}

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    previous = None
    for row, line in zip(rows, body, strict=True):
        if previous is not None and row.shape != previous:
            print()
        previous = row.shape
        print(fmt(line))


def targets(rows: list[Row]) -> list[tuple[str, bool | None]]:
    shape = Shape(*TARGET_SHAPE)
    ours = seconds_of(rows, shape, MLW_BOTH)
    if ours is None:
        return []
    floor = seconds_of(rows, shape, FLOOR)
    scipy_loop = seconds_of(rows, shape, SCIPY_BOTH)
    evidently = seconds_of(rows, shape, EVIDENTLY_BOTH)
    out: list[tuple[str, bool | None]] = []
    if floor is not None:
        ratio = ours / floor
        out.append(
            (
                f"KS+PSI within {TARGET_FLOOR_RATIO:g}x the floor: {ours:.4f} s = "
                f"{ratio:.1f}x the floor's {floor:.4f} s",
                ratio <= TARGET_FLOOR_RATIO,
            )
        )
    if scipy_loop is not None:
        speedup = scipy_loop / ours
        out.append(
            (
                f">= {TARGET_VS_SCIPY:g}x faster than the scipy KS + numpy PSI loop: "
                f"{speedup:.1f}x",
                speedup >= TARGET_VS_SCIPY,
            )
        )
    if evidently is not None:
        speedup = evidently / ours
        out.append(
            (
                f">= {TARGET_VS_EVIDENTLY:g}x faster than evidently (ks report + psi report): "
                f"{speedup:.0f}x",
                speedup >= TARGET_VS_EVIDENTLY,
            )
        )
    else:
        out.append(("faster than evidently: not measured (evidently not importable)", None))
    return out


def versions(alibi: str | None) -> list[str]:
    names = ["numpy", "scipy", "pandas", "evidently", "mlwatchdog"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    found.append(f"alibi-detect {alibi}" if alibi else "alibi-detect (not installed)")
    return [f"python {platform.python_version()}", *found]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {usable} usable core(s), {platform.system()} {platform.release()}"


def load() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def profile_target(shifted_share: float, top: int = 15) -> str:
    """cProfile of mlwatchdog KS+PSI at the target shape, by own time."""
    reference, current = make_data(Shape(*TARGET_SHAPE), shifted_share)
    ref = Reference(reference)
    ref.quantile_bins(PSI_BINS)
    ref.test(current, "ks")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        ref.test(current, "ks")
        ref.test(current, "psi")
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3 and 1, not 7 and 5)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile mlwatchdog KS+PSI at the target shape"
    )
    parser.add_argument(
        "--shifted-share",
        type=float,
        default=SHIFTED_SHARE,
        help=f"share of current columns shifted by {SHIFT} sd (default {SHIFTED_SHARE})",
    )
    args = parser.parse_args(argv)
    repeats, scipy_repeats = (3, 1) if args.quick else (7, 5)
    alibi = alibi_version()
    warnings.simplefilter("ignore", DeprecationWarning)  # evidently's own imports

    print(f"machine: {machine()}; load average at start {load()}")
    print("versions: " + ", ".join(versions(alibi)))
    print(
        f"repeats: {repeats} (mlwatchdog, floor), {scipy_repeats} (scipy loop, alibi), "
        "1 (evidently); median seconds" + (" [--quick]" if args.quick else "")
    )
    print(
        f"data: float64 N(0, 1); {args.shifted_share:.0%} of the current columns shifted by "
        f"{SHIFT} sd; PSI with {PSI_BINS} reference-quantile bins"
    )
    if not evidently_available():
        print("evidently: not importable, skipped")
    else:
        warm_up_evidently()
    if alibi is None:
        print("alibi-detect: not importable here, skipped (`make bench-alibi` runs it)")
    sys.stdout.flush()

    outcome = Outcome()
    for shape in SHAPES:
        print(f"... {shape.label}", file=sys.stderr, flush=True)
        bench_shape(shape, repeats, scipy_repeats, alibi is not None, args.shifted_share, outcome)

    print()
    print_table(outcome.rows, args.markdown)
    print()
    bullet = "- " if args.markdown else "  "
    print("Reference build (once per reference):")
    for line in outcome.setup:
        print(bullet + line)
    print("Correctness:")
    for line in outcome.checks:
        print(bullet + line)
    print(f"Load average at the end: {load()} (other work on the machine skews the timings)")
    print(f"Targets at {Shape(*TARGET_SHAPE).label}:")
    for text, met in targets(outcome.rows):
        verdict = "n/a" if met is None else "MET" if met else "MISSED"
        print(f"{bullet}[{verdict}] {text}")
    if args.profile:
        print()
        print(profile_target(args.shifted_share))
    if outcome.failed:
        print("A correctness check FAILED.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
