"""Reference: a reference sample prepared once (sorted columns, bins, categories) and fingerprinted.

The daemon builds one per reference content and keeps it across evaluations; `Reference.test`
compares a current window with it, one drift test at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlwatchdog.detectors.chi2 import chi2_counts
from mlwatchdog.detectors.corrections import Correction
from mlwatchdog.detectors.effect import EffectMeasure, effect_columns
from mlwatchdog.detectors.ks import KSMethod, ks_columns, ks_may_be_below
from mlwatchdog.detectors.psi import (
    Binning,
    QuantileBins,
    aligned_counts,
    psi_columns,
    quantile_bins,
)
from mlwatchdog.detectors.registry import REGISTRY, DriftTest
from mlwatchdog.detectors.result import DriftResult
from mlwatchdog.detectors.sample import (
    CategoricalColumn,
    ColumnKind,
    FloatArray,
    NumericColumn,
    Sample,
    as_float,
)
from mlwatchdog.errors import InputError

# Fewer usable values than this in either sample make a column "insufficient", not a p-value.
DEFAULT_MIN_SAMPLES = 30

# `Reference.resample` draws whole rows from at most this many of the reference's rows (a seeded
# subsample of larger references), so calibration keeps the columns' dependence.
KEPT_ROWS = 20_000


class Reference:
    """A reference data set ready for repeated drift tests against current windows.

    `data` is a DataFrame (columns by name; numbers are numeric, anything else categorical unless
    `kinds` says otherwise) or a 2-D array with samples along `axis` (`columns` names them).
    `workers`: threads that sort it, as in `test`. A `Sample` is taken as it is (it has no rows
    to `resample`).
    """

    def __init__(
        self,
        data: Any,
        *,
        columns: Sequence[str] | None = None,
        kinds: Sequence[ColumnKind | str] | None = None,
        axis: int = 0,
        workers: int | None = None,
    ) -> None:
        self._axis = axis
        if isinstance(data, Sample):
            self.sample, self._rows, self.n_rows = data, None, None
        else:
            self.sample = Sample.from_data(
                data, names=columns, kinds=kinds, axis=axis, workers=workers
            )
            self.n_rows, self._rows = _kept_rows(data, self.sample, axis)
        self.fingerprint = _fingerprint(self.sample)
        # Looked up per column on every test: a dict and a tuple built once, not per lookup.
        self._index = {name: i for i, name in enumerate(self.sample.names)}
        self._kinds = self.sample.kinds
        self._quantile_bins: dict[int, list[QuantileBins | None]] = {}
        self._bandwidths: list[float | None] | None = None  # for resample, computed once

    @property
    def columns(self) -> tuple[str, ...]:
        return self.sample.names

    @property
    def kinds(self) -> tuple[ColumnKind, ...]:
        return self._kinds

    def __repr__(self) -> str:
        return f"Reference({len(self.columns)} columns, fingerprint={self.fingerprint[:12]})"

    def resample(self, n: int, rng: np.random.Generator) -> Rows:
        """`n` rows drawn with replacement from the reference's rows: a window with no drift, for
        calibrating thresholds (`prepare` it to test it). Whole rows are drawn, so the columns'
        dependence is kept; numeric values move by a kernel's bandwidth (Silverman's rule) so that
        draws do not tie, as a continuous source's would not."""
        if self._rows is None:
            raise InputError("this Reference was built from a Sample; it has no rows to resample.")
        kept = self._rows
        if self._bandwidths is None:
            self._bandwidths = [
                _bandwidth(c.values) if isinstance(c, NumericColumn) else None
                for c in self.sample.columns
            ]
        picked = rng.integers(0, len(kept[0]) if kept else 0, size=n)
        rows = Rows()
        for name, values, width in zip(self.columns, kept, self._bandwidths, strict=True):
            drawn = values[picked]
            rows[name] = drawn if width is None else drawn + rng.normal(0.0, width, size=n)
        return rows

    def prepare(
        self, current: Any, columns: Sequence[str] | None = None, *, workers: int | None = None
    ) -> Sample:
        """Prepare a current window once for several tests (sorted, counted, checked).

        `columns` limits it to the columns those tests need (default: all of the reference's);
        `workers` as in `test`.
        """
        names = list(self.columns if columns is None else columns)
        kinds = [self.kinds[self._position(c)] for c in names]
        if isinstance(current, Sample):
            prepared = current.select(names)
            if list(prepared.kinds) != kinds:
                raise InputError(
                    f"this sample's columns {names} have kinds {[str(k) for k in prepared.kinds]}, "
                    f"the reference's {[str(k) for k in kinds]}; prepare it with this Reference."
                )
            return prepared
        return Sample.from_data(current, names=names, kinds=kinds, axis=self._axis, workers=workers)

    def _position(self, column: str) -> int:
        try:
            return self._index[column]
        except KeyError:
            raise InputError(
                f"column {column!r} is not in the reference, which has {list(self.columns)}; "
                "test only columns the reference was built with."
            ) from None

    def quantile_bins(self, bins: int) -> list[QuantileBins | None]:
        """Each numeric column's reference-quantile bins for PSI (None for categorical), cached."""
        if bins not in self._quantile_bins:
            self._quantile_bins[bins] = [
                quantile_bins(c, bins) if isinstance(c, NumericColumn) else None
                for c in self.sample.columns
            ]
        return self._quantile_bins[bins]

    def test(
        self,
        current: Any,
        test: DriftTest | str = DriftTest.KS,
        *,
        columns: Sequence[str] | None = None,
        threshold: float | None = None,
        correction: Correction | str = Correction.NONE,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        bins: int = 10,
        binning: Binning = "quantile",
        method: KSMethod = "auto",
        workers: int | None = None,
        effect: EffectMeasure | str | None = None,
        min_effect: float = 0.0,
    ) -> DriftResult:
        """Run one drift test on `columns` (default: every column of a kind the test takes).

        `threshold` is alpha for p-value tests (KS, chi2) and the PSI value for PSI; the registry
        gives the defaults. Columns with fewer than `min_samples` usable values on either side are
        reported as insufficient. `bins`/`binning` are for PSI, `method` for KS. `workers`: threads
        for sorting the window and the KS statistics, as scipy reads it (1: this thread only, -1:
        every CPU); None (default) uses more than one only for windows of 200,000 values or more.
        `effect`/`min_effect`: an effect floor (see `detectors.effect`); a column then drifts only
        when the test says so and its effect is at least `min_effect`.
        """
        name = _drift_test(test)
        spec = REGISTRY[name]
        chosen, index, ref_cols, cur_cols = self._pairs(name, current, columns, workers)
        n_ref = np.array([c.n for c in ref_cols], dtype=np.int64)
        n_cur = np.array([c.n for c in cur_cols], dtype=np.int64)
        statistic, pvalue = self._run(
            name, index, ref_cols, cur_cols, bins, binning, method, workers
        )
        measure = None if effect is None else EffectMeasure.parse(effect)
        sizes = None
        if measure is EffectMeasure.KS_D and name is DriftTest.KS:
            sizes = statistic  # the same D: not computed twice
        elif measure is not None:
            sizes = effect_columns(measure, ref_cols, cur_cols)
        return DriftResult(
            test=name,
            columns=tuple(chosen),
            statistic=statistic,
            pvalue=pvalue,
            n_reference=n_ref,
            n_current=n_cur,
            n_dropped=np.array([c.n_dropped for c in cur_cols], dtype=np.int64),
            sufficient=(n_ref >= min_samples) & (n_cur >= min_samples),
            threshold=spec.default_threshold if threshold is None else float(threshold),
            correction=Correction.parse(correction),
            effect=sizes,
            effect_measure=measure,
            min_effect=float(min_effect),
        )

    def could_drift(
        self,
        current: Any,
        test: DriftTest | str,
        *,
        drift_share: float,
        columns: Sequence[str] | None = None,
        threshold: float | None = None,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        method: KSMethod = "auto",
    ) -> bool:
        """False only when `test(current, ...)` with these arguments (any correction, any effect
        floor) certainly has `share_drifted() < drift_share` or NaN; True otherwise.

        A correction only raises p-values and an effect floor only removes columns, so a column
        with a p-value at or above `threshold` never drifts. For KS that settles most columns
        without their exact p-values (`ks.ks_may_be_below`); other tests always say True."""
        name = _drift_test(test)
        if name is not DriftTest.KS:
            return True
        _, _, ref_cols, cur_cols = self._pairs(name, current, columns, None)
        n_ref = np.array([c.n for c in ref_cols], dtype=np.int64)
        n_cur = np.array([c.n for c in cur_cols], dtype=np.int64)
        sufficient = (n_ref >= min_samples) & (n_cur >= min_samples)
        n = int(sufficient.sum())
        if n == 0:
            return False  # share NaN: no breach
        alpha = REGISTRY[name].default_threshold if threshold is None else float(threshold)
        may = ks_may_be_below(ref_cols, cur_cols, alpha, method) & sufficient
        return float(may.sum() / n) >= drift_share  # share_drifted's own division

    def _pairs(
        self,
        test: DriftTest,
        current: Any,
        columns: Sequence[str] | None,
        workers: int | None,
    ) -> tuple[list[str], list[int], list[Any], list[Any]]:
        """The columns `test` runs on, their positions, and their reference and current data."""
        spec = REGISTRY[test]
        chosen = self._columns_for(spec.name, spec.kinds, columns)
        index = [self._position(c) for c in chosen]
        ref_cols = [self.sample.columns[i] for i in index]
        cur_cols = list(self.prepare(current, chosen, workers=workers).columns)
        return chosen, index, ref_cols, cur_cols

    def _columns_for(
        self, test: DriftTest, kinds: frozenset[ColumnKind], columns: Sequence[str] | None
    ) -> list[str]:
        if columns is None:
            return [c for c, k in zip(self.columns, self.kinds, strict=True) if k in kinds]
        for c in columns:
            kind = self.kinds[self._position(c)]
            if kind not in kinds:
                takers = [str(t) for t, s in REGISTRY.items() if kind in s.kinds]
                raise InputError(
                    f"test {test!s} does not apply to {kind!s} column {c!r}; "
                    f"use one of {takers} for it, or leave it out of this test's columns."
                )
        return list(columns)

    def _run(
        self,
        test: DriftTest,
        index: list[int],
        ref_cols: list[Any],
        cur_cols: list[Any],
        bins: int,
        binning: Binning,
        method: KSMethod,
        workers: int | None,
    ) -> tuple[FloatArray, FloatArray]:
        no_pvalue = np.full(len(index), np.nan)
        if test is DriftTest.KS:
            statistic, pvalue, _ = ks_columns(ref_cols, cur_cols, method, workers)
            return statistic, pvalue
        if test is DriftTest.PSI:
            bins_for = self.quantile_bins(bins) if binning == "quantile" else None
            quantiles = [bins_for[i] if bins_for else None for i in index]
            return psi_columns(ref_cols, cur_cols, quantiles, binning), no_pvalue
        rows = [chi2_counts(*aligned_counts(r, c)) for r, c in zip(ref_cols, cur_cols, strict=True)]
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


class Rows(dict[str, Any]):
    """Row-aligned arrays by column name, read as a frame by `Sample.from_data`."""

    @property
    def columns(self) -> list[str]:
        return list(self)

    def head(self, n: int) -> Rows:
        """The first `n` rows."""
        return Rows((name, values[:n]) for name, values in self.items())


def _kept_rows(data: Any, sample: Sample, axis: int) -> tuple[int, list[Any]]:
    """The number of rows in `data` and its columns' values on at most KEPT_ROWS of them (a seeded
    subsample), row-aligned: numeric ones as floats (NaN kept), categorical ones as objects."""
    if hasattr(data, "columns") and hasattr(data, "__getitem__"):
        raw = [data[name] for name in sample.names]
    else:
        array = np.asarray(data)
        block = array[:, np.newaxis] if array.ndim == 1 else np.moveaxis(array, axis, 0)
        raw = [block[:, j] for j in range(block.shape[1])]
    kept = [
        as_float(values) if isinstance(column, NumericColumn) else np.asarray(values, dtype=object)
        for values, column in zip(raw, sample.columns, strict=True)
    ]
    n = len(kept[0]) if kept else 0
    if n > KEPT_ROWS:
        chosen = np.sort(np.random.default_rng(0).choice(n, KEPT_ROWS, replace=False))
        kept = [values[chosen] for values in kept]
    return n, kept


def _bandwidth(values: FloatArray) -> float:
    """Silverman's rule of thumb for a Gaussian kernel on sorted `values` (0 for a constant)."""
    n = values.size
    if n < 2:
        return 0.0
    q1, q3 = np.quantile(values, [0.25, 0.75])
    spread = min(float(values.std()), float(q3 - q1) / 1.34) or float(values.std())
    return float(0.9 * spread * n**-0.2)


def _drift_test(test: DriftTest | str) -> DriftTest:
    try:
        return DriftTest(test)
    except ValueError:
        raise InputError(
            f"unknown drift test {test!r}; choose one of {[str(t) for t in DriftTest]}."
        ) from None


def _fingerprint(sample: Sample) -> str:
    """sha256 of the reference's content: column names, kinds and values (order-independent)."""
    digest = hashlib.sha256(b"mlwatchdog-reference-v1")
    for name, column in zip(sample.names, sample.columns, strict=True):
        digest.update(name.encode() + b"\0")
        if isinstance(column, CategoricalColumn):
            digest.update(b"categorical\0")
            for label in column.labels.tolist():
                digest.update(len(label).to_bytes(8, "little") + label.encode())
            digest.update(column.counts.tobytes())
        else:
            digest.update(b"numeric\0" + (column.values + 0.0).tobytes())  # -0.0 == 0.0
        digest.update(str(column.n_dropped).encode() + b"\0")
    return digest.hexdigest()
