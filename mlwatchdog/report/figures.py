"""The report's plots, drawn for the test each column was judged by, from the Reference and the
window the evaluation used (nothing is read again):

- KS: both empirical CDFs, and the segment where they are furthest apart (D);
- PSI: each bin's share of the reference and of the window (the reference's quantile bins, or
  categories);
- chi-square: each category's share in both;
- a timeline per check: its value against its threshold, the pending and firing stretches shaded,
  decisions marked.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from mlwatchdog.core import CheckResult, base_check
from mlwatchdog.detectors import ColumnResult, Reference
from mlwatchdog.detectors.psi import aligned_counts, bin_counts
from mlwatchdog.detectors.sample import CategoricalColumn, NumericColumn
from mlwatchdog.report import svg
from mlwatchdog.rules import DriftCheck, MetricCheck, PerformanceCheck, Target

# Points per ECDF: enough to look exact at this size, few enough to keep the page small.
ECDF_POINTS = 400
MAX_CATEGORIES = 20  # more are summed as "(other)"
MAX_COLUMN_PLOTS = 24  # per check: drifted columns first, then by statistic


@dataclass(frozen=True)
class ColumnFigure:
    check: str
    column: str
    test: str
    drifted: bool | None
    svg: str


@dataclass(frozen=True)
class TimelineFigure:
    check: str
    svg: str


def column_figures(
    target: Target,
    results: Sequence[CheckResult],
    reference: Reference | None,
    samples: Any,
    active: set[str],
) -> list[ColumnFigure]:
    """Plots of the columns of the drift checks in `active` (those that drove the decision;
    every drift check when empty), drifted columns first."""
    if reference is None or samples is None or len(samples) == 0:
        return []
    figures = []
    for result in results:
        check = target.check(base_check(result.check))
        if not isinstance(check, DriftCheck) or (active and result.check not in active):
            continue
        rows = [r for r in result.columns if r.column in reference.columns]
        rows.sort(key=lambda r: (not r.drifted, -_badness(r)))
        for row in rows[:MAX_COLUMN_PLOTS]:
            try:
                current = reference.prepare(samples, [row.column]).columns[0]
            except Exception:  # a column the window lacks: its table row says so
                continue
            ref = reference.sample.columns[reference.columns.index(row.column)]
            figures.append(
                ColumnFigure(
                    result.check, row.column, str(row.test), row.drifted,
                    column_svg(row, ref, current, check, result.test_threshold),
                )
            )  # fmt: skip
    return figures


def column_svg(
    row: ColumnResult,
    ref: NumericColumn | CategoricalColumn,
    cur: NumericColumn | CategoricalColumn,
    check: DriftCheck,
    test_threshold: float | None,
) -> str:
    test = str(row.test)
    verdict = {True: "drifted", False: "no drift", None: "insufficient"}[row.drifted]
    if isinstance(ref, NumericColumn) and isinstance(cur, NumericColumn):
        if test == "psi":
            return _psi_numeric(row, ref, cur, check.bins, test_threshold, verdict)
        return _ecdf(row, ref, cur, test_threshold, verdict)
    if isinstance(ref, CategoricalColumn) and isinstance(cur, CategoricalColumn):
        return _categories(row, ref, cur, test_threshold, verdict)
    return svg.bar_chart(f"{row.column}: kinds differ", [], [])


def _ecdf(
    row: ColumnResult,
    ref: NumericColumn,
    cur: NumericColumn,
    alpha: float | None,
    verdict: str,
) -> str:
    if ref.n == 0 or cur.n == 0:
        return svg.line_chart(f"{row.column} (KS): no values", [])
    grid = np.union1d(_spread(ref.values), _spread(cur.values))
    f_ref = np.searchsorted(ref.values, grid, side="right") / ref.n
    f_cur = np.searchsorted(cur.values, grid, side="right") / cur.n
    # D over every value of both samples (not only the drawn grid): where it really is.
    every = np.union1d(ref.values, cur.values)
    gap = np.abs(
        np.searchsorted(ref.values, every, side="right") / ref.n
        - np.searchsorted(cur.values, every, side="right") / cur.n
    )
    at = int(np.argmax(gap))
    x = float(every[at])
    y_ref = float(np.searchsorted(ref.values, x, side="right") / ref.n)
    y_cur = float(np.searchsorted(cur.values, x, side="right") / cur.n)
    d = row.statistic if row.statistic is not None else float(gap[at])
    p = row.pvalue_adjusted if row.pvalue_adjusted is not None else row.pvalue
    title = f"{_short(row.column)}: KS D = {d:.3f}, p = {_p(p)}"
    if alpha is not None:
        title += f" (alpha {alpha:g}): {verdict}"
    return svg.line_chart(
        title,
        [
            svg.Line(
                f"reference (n={ref.n})",
                grid.tolist(),
                f_ref.tolist(),
                svg.REFERENCE,
                "reference",
                steps=True,
            ),
            svg.Line(
                f"current (n={cur.n})",
                grid.tolist(),
                f_cur.tolist(),
                svg.CURRENT,
                "current",
                steps=True,
            ),
        ],
        x_label=row.column,
        y_label="cumulative share",
        y_range=(0.0, 1.0),
        segments=[svg.Segment(x, min(y_ref, y_cur), max(y_ref, y_cur), f"D = {d:.3f}")],
    )


def _psi_numeric(
    row: ColumnResult,
    ref: NumericColumn,
    cur: NumericColumn,
    bins: int,
    limit: float | None,
    verdict: str,
) -> str:
    edges = _quantile_edges(ref, bins)
    ref_counts = bin_counts(ref.values, edges)
    cur_counts = bin_counts(cur.values, edges)
    labels = _bin_labels(edges)
    return _share_bars(row, labels, ref_counts, cur_counts, ref.n, cur.n, limit, verdict, "bin")


def _categories(
    row: ColumnResult,
    ref: CategoricalColumn,
    cur: CategoricalColumn,
    threshold: float | None,
    verdict: str,
) -> str:
    ref_counts, cur_counts = aligned_counts(ref, cur)
    labels = np.union1d(ref.labels, cur.labels).tolist()
    if len(labels) > MAX_CATEGORIES:
        weight = ref_counts / max(ref.n, 1) + cur_counts / max(cur.n, 1)
        keep = np.sort(np.argsort(-weight, kind="stable")[: MAX_CATEGORIES - 1])
        rest = np.setdiff1d(np.arange(len(labels)), keep)
        labels = [labels[i] for i in keep] + ["(other)"]
        ref_counts = np.append(ref_counts[keep], ref_counts[rest].sum())
        cur_counts = np.append(cur_counts[keep], cur_counts[rest].sum())
    return _share_bars(
        row, [str(c) for c in labels], ref_counts, cur_counts, ref.n, cur.n, threshold, verdict,
        "category",
    )  # fmt: skip


def _share_bars(
    row: ColumnResult,
    labels: Sequence[str],
    ref_counts: Any,
    cur_counts: Any,
    n_ref: int,
    n_cur: int,
    threshold: float | None,
    verdict: str,
    what: str,
) -> str:
    test = str(row.test)
    if test == "psi":
        value = "-" if row.statistic is None else f"{row.statistic:.3f}"
        title = f"{_short(row.column)}: PSI = {value}"
        if threshold is not None:
            title += f" (limit {threshold:g}): {verdict}"
    else:
        p = row.pvalue_adjusted if row.pvalue_adjusted is not None else row.pvalue
        value = "-" if row.statistic is None else f"{row.statistic:.3g}"
        title = f"{_short(row.column)}: chi-square {value}, p = {_p(p)}"
        if threshold is not None:
            title += f" (alpha {threshold:g}): {verdict}"
    return svg.bar_chart(
        title,
        labels,
        [
            (
                f"reference (n={n_ref})",
                (ref_counts / max(n_ref, 1)).tolist(),
                svg.REFERENCE,
                "reference",
            ),
            (f"current (n={n_cur})", (cur_counts / max(n_cur, 1)).tolist(), svg.CURRENT, "current"),
        ],
        y_label="share of values",
        x_label=f"{row.column} ({what})",
    )


# ---------------------------------------------------------------------------------- timelines


def timeline_figures(
    target: Target,
    rows: Iterable[Mapping[str, Any]],
    decisions: Sequence[tuple[datetime, str]],
    *,
    connect: bool = True,
) -> list[TimelineFigure]:
    """One plot per check from timeline rows (`replay.timeline.TIMELINE_COLUMNS`): the value
    against the threshold it is compared with, pending and firing shaded, decisions marked.
    `connect=False` draws points only (rows of the changes alone, as bundles keep them)."""
    by_check: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_check.setdefault(str(row["check"]), []).append(row)
    at_time: dict[float, list[str]] = {}
    for t, label in decisions:  # decisions at one time share a marker: "rollback, escalate"
        labels = at_time.setdefault(t.timestamp(), [])
        labels += [label] if label not in labels else []
    marks = [svg.Rule(t, ", ".join(ls), svg.MARKER, "marker") for t, ls in at_time.items()]
    figures = []
    for name, points in by_check.items():
        points = sorted(points, key=lambda r: _time(r["time"]))
        xs = [_time(r["time"]).timestamp() for r in points]
        ys = [_finite(r.get("value")) for r in points]
        check = _check(target, name)
        threshold = next(
            (t for t in (_finite(r.get("threshold")) for r in reversed(points)) if t is not None),
            None,
        )
        what, rule = _meaning(check, threshold)
        bands = _bands(xs, [str(r.get("check_state") or "inactive") for r in points])
        shown = [m for m in marks if xs[0] <= m.at <= xs[-1]] if xs else []
        figures.append(
            TimelineFigure(
                name,
                svg.line_chart(
                    f"{name}: {what}",
                    [
                        svg.Line(
                            what, xs, ys, "#1d4ed8", "value", dots=len(xs) <= 60, connect=connect
                        )
                    ],
                    time_x=True,
                    hrules=[rule] if rule else [],
                    vrules=shown,
                    bands=bands,
                ),
            )
        )
    return figures


def _meaning(check: Any, threshold: float | None) -> tuple[str, svg.Rule | None]:
    """What a check's value is, and its threshold line, labelled with the setting's name."""
    if isinstance(check, DriftCheck):
        rule = None if threshold is None else svg.Rule(threshold, f"drift_share {threshold:g}")
        return f"share of columns drifted ({check.test})", rule
    if isinstance(check, MetricCheck | PerformanceCheck):
        what = "metric value" if isinstance(check, MetricCheck) else str(check.metric)
        side = "above" if check.above is not None else "below"
        rule = None if threshold is None else svg.Rule(threshold, f"{side} {threshold:g}")
        return what, rule
    return "value", None if threshold is None else svg.Rule(threshold, f"threshold {threshold:g}")


def _bands(xs: Sequence[float], states: Sequence[str]) -> list[svg.Band]:
    """Stretches of pending and firing: each point's state holds until the next point."""
    bands: list[svg.Band] = []
    for i, (x, state) in enumerate(zip(xs, states, strict=True)):
        if state not in svg.BANDS:
            continue
        end = xs[i + 1] if i + 1 < len(xs) else x
        if bands and bands[-1].state == state and bands[-1].end == x:
            bands[-1] = svg.Band(bands[-1].start, end, state)
        else:
            bands.append(svg.Band(x, end, state))
    return bands


# ------------------------------------------------------------------------------------ helpers


def _check(target: Target, name: str) -> Any:
    try:
        return target.check(base_check(name))
    except (StopIteration, KeyError, ValueError):
        return None


def _badness(row: ColumnResult) -> float:
    if row.statistic is None:
        return -math.inf
    if row.pvalue is not None:
        return -(row.pvalue_adjusted if row.pvalue_adjusted is not None else row.pvalue)
    return row.statistic


def _spread(values: Any) -> Any:
    """At most ECDF_POINTS of a sorted array's values, evenly by rank, ends included."""
    if values.size <= ECDF_POINTS:
        return values
    return values[np.linspace(0, values.size - 1, ECDF_POINTS).round().astype(np.int64)]


def _quantile_edges(ref: NumericColumn, bins: int) -> Any:
    from mlwatchdog.detectors.psi import quantile_bins

    return quantile_bins(ref, bins).edges


def _bin_labels(edges: Any) -> list[str]:
    e = [f"{v:.3g}" for v in edges]
    if not e:
        return ["all"]
    return [f"< {e[0]}"] + [f"{a}\u2013{b}" for a, b in itertools.pairwise(e)] + [f"\u2265 {e[-1]}"]


def _short(name: str, limit: int = 36) -> str:
    """A column's name in a plot's title (the axis and the tables have it whole)."""
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if hasattr(value, "to_pydatetime"):
        moment: datetime = value.to_pydatetime()
        return moment
    return datetime.fromisoformat(str(value))
