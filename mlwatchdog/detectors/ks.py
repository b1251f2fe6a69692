"""Two-sample Kolmogorov-Smirnov test, two-sided, over many columns at once; scipy's results.

`ks_2samp` is the functional form (like `scipy.stats.ks_2samp` with `axis`); `ks_columns` is the
kernel `Reference.test` calls with already-sorted columns, so a cached reference is never re-sorted.

Why it is fast: scipy evaluates both ECDFs at all n1 + n2 points after sorting both samples. The
ECDF difference only changes at sample points, so its supremum is found from the current sample
alone: with the current values c_0 <= ... <= c_{n2-1} and the reference counts left/right of each,
    D+ = max_k  #ref<c_k / n1 - k / n2        D- = max_k  (k+1) / n2 - #ref<=c_k / n1
(ties inside the current sample only produce smaller candidates). These are the very floats scipy
compares, so the statistic is bit-identical; the p-value then follows scipy's two regimes.

The exact p-values are scipy's compiled kernel's own (a numpy rewrite, even batched over columns,
was measured 20x slower: DESIGN.md); `ks_may_be_below` answers "below alpha?" per column from
few of them, for tests whose p-values count only when significant (the recent sub-windows).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

from mlwatchdog.detectors.sample import FloatArray, IntArray, NumericColumn, Sample
from mlwatchdog.detectors.threads import run_chunks, thread_count
from mlwatchdog.errors import InputError

KSMethod = Literal["auto", "exact", "asymp"]

# scipy's `auto` is exact when both samples have at most this many values.
MAX_AUTO_EXACT_N = 10_000
_INT32_MAX = np.iinfo(np.int32).max

ExactKernel = Callable[[int, int, int, float, str], tuple[bool, float, float]]


def _load_exact_kernel() -> ExactKernel | None:
    # scipy's own exact null distribution of D (compiled); a private name, so it is looked up
    # defensively and, if ever gone, the exact columns go through public scipy.stats.ks_2samp.
    try:
        from scipy.stats._stats_py import (  # type: ignore[attr-defined]
            _attempt_exact_2kssamp,
        )
    except ImportError:
        return None
    return _attempt_exact_2kssamp  # type: ignore[no-any-return]


_EXACT_KERNEL = _load_exact_kernel()


@dataclass(frozen=True, eq=False)
class KSResult:
    """Per-column KS results, like scipy's: arrays of shape (n_columns,) (scalars for 1-D input).

    `exact` says which columns got scipy's exact p-value; NaN marks a column with an empty sample.
    """

    statistic: Any
    pvalue: Any
    n_reference: Any
    n_current: Any
    exact: Any


def ks_2samp(
    reference: Any,
    current: Any,
    axis: int = 0,
    method: KSMethod = "auto",
    *,
    workers: int | None = None,
) -> KSResult:
    """Two-sided two-sample KS test of each column of `current` against `reference`.

    Matches `scipy.stats.ks_2samp(reference[:, j], current[:, j], method=method)` per column,
    after dropping NaN and inf per column (scipy would propagate them). Samples lie along `axis`.
    `workers` as in scipy (-1: every CPU); None: more than one thread only for large samples.
    """
    ref = Sample.from_data(reference, axis=axis, workers=workers)
    cur = Sample.from_data(current, axis=axis, workers=workers)
    if len(ref) != len(cur):
        raise InputError(
            f"reference has {len(ref)} column(s) and current has {len(cur)}; "
            "both must have the same columns along the non-sample axis."
        )
    stat, pvalue, exact = ks_columns(_numeric(ref), _numeric(cur), method, workers)
    n_ref = np.array([c.n for c in _numeric(ref)], dtype=np.int64)
    n_cur = np.array([c.n for c in _numeric(cur)], dtype=np.int64)
    if np.ndim(reference) == 1:
        return KSResult(stat[0], pvalue[0], n_ref[0], n_cur[0], exact[0])
    return KSResult(stat, pvalue, n_ref, n_cur, exact)


def _numeric(sample: Sample) -> list[NumericColumn]:
    columns = [c for c in sample.columns if isinstance(c, NumericColumn)]
    if len(columns) != len(sample):
        raise InputError("the KS test takes numeric columns only; use chi2 or psi for categories.")
    return columns


def ks_columns(
    reference: Sequence[NumericColumn],
    current: Sequence[NumericColumn],
    method: KSMethod = "auto",
    workers: int | None = None,
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Statistic, p-value and exact flag per column pair of sorted finite values, in chunks of
    columns on `workers` threads (`threads.thread_count`; None: by size)."""
    if method not in ("auto", "exact", "asymp"):
        raise InputError(f"unknown KS method {method!r}; use 'auto', 'exact' or 'asymp'.")
    n_columns = len(reference)
    if len(current) != n_columns:
        raise InputError(f"{n_columns} reference column(s) but {len(current)} current column(s).")
    statistic = np.full(n_columns, np.nan)
    pvalue = np.full(n_columns, np.nan)
    exact = np.zeros(n_columns, dtype=bool)
    n1 = np.array([c.n for c in reference], dtype=np.int64)
    n2 = np.array([c.n for c in current], dtype=np.int64)
    usable = (n1 > 0) & (n2 > 0)
    want_exact = _wants_exact(n1, n2, method)
    steps = _StepCache()

    def columns(start: int, stop: int) -> None:
        # Statistics and p-values of columns [start, stop): each chunk writes only its own.
        for j in range(start, stop):
            if usable[j]:
                statistic[j] = _statistic(reference[j].values, current[j].values, steps)
        for k in (start + np.flatnonzero(want_exact[start:stop])).tolist():
            ok, statistic[k], p = _exact(reference[k], current[k], float(statistic[k]))
            if ok:
                pvalue[k], exact[k] = p, True
        asymp = start + np.flatnonzero(usable[start:stop] & ~exact[start:stop])
        if asymp.size:
            pvalue[asymp] = _asymptotic(statistic[asymp], n1[asymp], n2[asymp])

    run_chunks(columns, n_columns, thread_count(int(n2.sum()), workers))
    return statistic, np.clip(pvalue, 0.0, 1.0), exact


def _asymptotic(statistic: FloatArray, n1: IntArray, n2: IntArray) -> FloatArray:
    """scipy's asymptotic p-values (its `auto` beyond the exact sizes, or when exact fails)."""
    m, n = n1.astype(np.float64), n2.astype(np.float64)
    return kstwo_sf(statistic, np.round(m * n / (m + n)))


# scipy's exact p-values are within far less than 1e-9 relative of the true ones (n1 != n2: each
# step of its recursion is a convex combination, so about (n1 + n2) x 4 ulps at most; n1 == n2:
# an alternating sum of fast-shrinking terms), and the true P(D >= d) never rises with d; so one
# computed above threshold x (1 + this) vouches for every column of the same sizes with a
# smaller D.
_SCREEN_MARGIN = 1e-6


def ks_may_be_below(
    reference: Sequence[NumericColumn],
    current: Sequence[NumericColumn],
    threshold: float,
    method: KSMethod = "auto",
) -> NDArray[np.bool_]:
    """Per column pair: might `ks_columns`' p-value be below `threshold`? False only where it
    certainly is not (or the column is empty); True is exact for the columns it computes.

    For a check whose result counts only when a column is significant (a recent sub-window),
    most exact p-values need not be computed: the columns of the same sizes are taken by
    decreasing D, and the first p-value comfortably at or above `threshold` settles all those
    after it, since P(D >= d) falls as d grows. On stationary data that is one exact p-value
    per sizes instead of one per column."""
    n1 = np.array([c.n for c in reference], dtype=np.int64)
    n2 = np.array([c.n for c in current], dtype=np.int64)
    exact = _wants_exact(n1, n2, method)
    may = np.zeros(len(reference), dtype=bool)
    rest = np.flatnonzero(~exact).tolist()
    if rest:  # the asymptotic p-values are cheap: as ks_columns gives them (NaN: empty, False)
        _, pvalue, _ = ks_columns([reference[k] for k in rest], [current[k] for k in rest], method)
        may[rest] = pvalue < threshold
    steps = _StepCache()
    by_sizes: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for k in np.flatnonzero(exact).tolist():
        d = _statistic(reference[k].values, current[k].values, steps)
        by_sizes.setdefault((int(n1[k]), int(n2[k])), []).append((d, k))
    for members in by_sizes.values():
        members.sort(reverse=True)  # largest D first
        for position, (d, k) in enumerate(members):
            ok, snapped, p = _exact(reference[k], current[k], d)
            # scipy's asymptotic p-value: its fallback for a column whose exact one fails
            # (NaN for one or two values a side, where scipy divides by 0: never settles).
            with np.errstate(divide="ignore", invalid="ignore"):
                fallback = _asymptotic(np.array([snapped]), n1[[k]], n2[[k]])
            asymptotic = float(np.clip(fallback, 0.0, 1.0)[0])
            may[k] = (p if ok else asymptotic) < threshold
            # Both p-values fall as D grows: columns after this one are at least as large
            # whichever scipy gives them.
            if ok and min(p, asymptotic) >= threshold * (1.0 + _SCREEN_MARGIN):
                may[[k for _, k in members[position + 1 :]]] = False
                break
    return may


def _wants_exact(n1: IntArray, n2: IntArray, method: KSMethod) -> NDArray[np.bool_]:
    """The columns given scipy's exact p-value (if its kernel succeeds), as `method` says."""
    usable = (n1 > 0) & (n2 > 0)
    if method == "auto":
        return usable & (np.maximum(n1, n2) <= MAX_AUTO_EXACT_N)
    if method == "exact":
        return usable
    return np.zeros(n1.shape, dtype=bool)


# Where scipy's kstwo.sf is 2 * scipy.special.smirnov(n, d) (scipy.stats._ksstats._kolmogn, SF
# branch for n > 140), that one-sided exact sum is computed here with numpy, O(n) vectorised
# terms instead of scipy's scalar loop: the p-values of drifted columns were most of the cost.
_SMIRNOV_MIN_N = 140
_SMIRNOV_MAX_N = 200_000  # beyond, rounding in the log-terms nears 1e-9 relative: scipy's own
_SMIRNOV_TINY = 1e-290  # below, scipy's subnormal results differ in the last digits: scipy's own


def kstwo_sf(d: FloatArray, n: FloatArray) -> FloatArray:
    """scipy.stats.kstwo.sf(d, n) per element (n whole), equal to it within 1e-9 relative."""
    d, n = np.asarray(d, dtype=np.float64), np.asarray(n, dtype=np.float64)
    out = np.full(d.shape, np.nan)
    t = n * d
    big = (n > _SMIRNOV_MIN_N) & (n <= _SMIRNOV_MAX_N) & (t > 1.0) & (t < n - 1) & (d < 1.0)
    nd2 = t * d
    smirnov = big & ((d >= 0.5) | ((nd2 >= 2.2) & (nd2 < 370.0)))
    out[big & (d < 0.5) & (nd2 >= 370.0)] = 0.0  # scipy's own cut-off
    for k in np.flatnonzero(smirnov).tolist():
        p = 2.0 * _smirnov(int(n[k]), float(d[k]))
        out[k] = p if p >= _SMIRNOV_TINY else np.nan
    rest = np.isnan(out)
    if rest.any():
        out[rest] = stats.kstwo.sf(d[rest], n[rest])
    clipped: FloatArray = np.clip(out, 0.0, 1.0)
    return clipped


def _smirnov(n: int, x: float) -> float:
    """P(D+_n >= x), Birnbaum-Tingey: x * sum_j C(n,j) (1-x-j/n)^(n-j) (x+j/n)^(j-1)."""
    j = np.arange(math.floor(n * (1.0 - x)) + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):  # the last term can be exactly 0: log 0 = -inf is right
        logs = (
            special.gammaln(n + 1.0)
            - special.gammaln(j + 1.0)
            - special.gammaln(n - j + 1.0)
            + (n - j) * np.log1p(-x - j / n)
            + (j - 1.0) * np.log(x + j / n)
        )
    return float(x * np.exp(special.logsumexp(logs)))


class _StepCache:
    """k/n2 and (k+1)/n2 for each current size seen in one call (most columns share it)."""

    def __init__(self) -> None:
        self._by_n: dict[int, tuple[FloatArray, FloatArray]] = {}

    def get(self, n: int) -> tuple[FloatArray, FloatArray]:
        if n not in self._by_n:
            k = np.arange(n + 1, dtype=np.int64)
            self._by_n[n] = (k[:-1] / n, k[1:] / n)
        return self._by_n[n]


def ks_statistic(ref: FloatArray, cur: FloatArray) -> float:
    """The KS statistic D of two sorted, finite, non-empty samples."""
    return _statistic(ref, cur, _StepCache())


def _statistic(ref: FloatArray, cur: FloatArray, steps: _StepCache) -> float:
    n1 = ref.size
    below, upto = steps.get(cur.size)
    right: IntArray = np.searchsorted(ref, cur, side="right")
    # Only values present in both samples make #ref<c differ from #ref<=c.
    tied = ref[np.maximum(right - 1, 0)] == cur
    left = np.searchsorted(ref, cur, side="left") if tied.any() else right
    d_plus = np.max(left / n1 - below)
    d_minus = np.max(upto - right / n1)
    return float(max(d_plus, d_minus, 0.0))


class _ExactCache:
    """scipy's exact results by (n1, n2, h), kept across calls: a pure function of the key, and
    the costliest part of a test (about 2.5 ms for 1,000 against 10,000 values, in C). A
    daemon tests windows of nearly the same sizes against the same references all day, and
    its sub-windows have fixed sizes, so the same keys come back. Bounded, least recently
    used first out; shared by the scheduler's threads (two missing one key may both compute
    it: the same value)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._results: OrderedDict[tuple[int, int, int], tuple[bool, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, int]) -> tuple[bool, float, float] | None:
        with self._lock:
            found = self._results.get(key)
            if found is not None:
                self._results.move_to_end(key)
            return found

    def put(self, key: tuple[int, int, int], result: tuple[bool, float, float]) -> None:
        with self._lock:
            self._results[key] = result
            while len(self._results) > self.entries:
                self._results.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._results.clear()


EXACT_CACHE = _ExactCache(200_000)  # about 40 MB when full


def _exact(ref: NumericColumn, cur: NumericColumn, d: float) -> tuple[bool, float, float]:
    """scipy's exact regime: D snapped to h/lcm(n1, n2), then its exact null probability."""
    n1, n2 = ref.n, cur.n
    g = math.gcd(n1, n2)
    if n1 // g >= _INT32_MAX / (n2 // g):
        return False, d, math.nan  # lcm too large for scipy's exact path: it uses asymp
    lcm = (n1 // g) * n2
    h = round(d * lcm)  # Python rounds half to even, as np.round does
    key = (n1, n2, h)
    found = EXACT_CACHE.get(key)
    if found is not None:
        return found
    if _EXACT_KERNEL is not None:
        ok, snapped, p = _EXACT_KERNEL(n1, n2, g, d, "two-sided")
    else:  # scipy's public function gives the same answer, only slower
        # it says it fell back to the asymptotic p-value only through a warning.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = stats.ks_2samp(ref.values, cur.values, method="exact")
        ok = not any("unsuccessful" in str(w.message) for w in caught)
        snapped, p = float(res.statistic), float(res.pvalue)
    result = (bool(ok), float(snapped), float(p))
    EXACT_CACHE.put(key, result)
    return result
