"""Reference: kinds, fingerprint, Reference.test against the functional tests and scipy, bad input,
awkward data (NaN, inf, pd.NA, empty and tiny windows, constants) and drift-flag semantics."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlwatchdog.detectors import (
    REGISTRY,
    ColumnKind,
    ColumnStatus,
    DriftResult,
    DriftTest,
    Reference,
    chi2,
    ks_2samp,
    psi,
)
from mlwatchdog.errors import InputError

NUMERIC = ["num", "rounded", "count"]
CATEGORICAL = ["color", "grade", "flag"]

# What an InputError message should tell the user to do.
ACTION = re.compile(
    r"\b(provide|send|pass|use|choose|test only|declare|name|leave|drop|convert)\b", re.I
)


def mixed_frame(seed: int, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Numeric (float, rounded float, int) and categorical (object, category, bool) columns."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "num": rng.normal(shift, 1.0, n),
            "rounded": np.round(rng.normal(shift, 1.0, n), 1),
            "count": rng.integers(0, 20, n) + int(5 * shift),
            "color": rng.choice(["red", "green", "blue"], n).astype(object),
            "grade": pd.Categorical(rng.choice(["a", "b", "c"], n)),
            "flag": rng.random(n) < 0.3 + 0.2 * shift,
        }
    )


def finite(values: Any) -> Any:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def scipy_ks(reference: Any, current: Any) -> tuple[float, float]:
    res = stats.ks_2samp(finite(reference), finite(current))
    return float(res.statistic), float(res.pvalue)


def scipy_chi2_labels(reference: Sequence[Any], current: Sequence[Any]) -> tuple[float, float]:
    """chi2_contingency (default Yates at dof 1) on label counts; missing labels left out."""
    ref = Counter(str(v) for v in reference if not pd.isna(v))
    cur = Counter(str(v) for v in current if not pd.isna(v))
    labels = sorted(set(ref) | set(cur))
    res = stats.chi2_contingency(np.array([[ref[v] for v in labels], [cur[v] for v in labels]]))
    return float(res.statistic), float(res.pvalue)


def assert_actionable(error: pytest.ExceptionInfo[InputError], *mentions: str) -> None:
    message = str(error.value)
    for mention in mentions:
        assert mention in message, (mention, message)
    assert ACTION.search(message), message


@pytest.fixture(scope="module")
def reference_frame() -> pd.DataFrame:
    return mixed_frame(1, 600)


@pytest.fixture(scope="module")
def current_frame() -> pd.DataFrame:
    return mixed_frame(2, 400, shift=0.3)


@pytest.fixture(scope="module")
def reference(reference_frame: pd.DataFrame) -> Reference:
    return Reference(reference_frame)


# ----------------------------------------------------------------------------- kinds


def test_kinds_follow_dtypes(reference: Reference) -> None:
    assert reference.columns == tuple(NUMERIC + CATEGORICAL)
    assert reference.kinds == (ColumnKind.NUMERIC,) * 3 + (ColumnKind.CATEGORICAL,) * 3


def test_default_columns_are_those_of_a_kind_the_test_takes(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    assert reference.test(current_frame, "ks").columns == tuple(NUMERIC)
    assert reference.test(current_frame, "chi2").columns == tuple(CATEGORICAL)
    assert reference.test(current_frame, "psi").columns == tuple(NUMERIC + CATEGORICAL)
    chosen = reference.test(current_frame, DriftTest.KS, columns=["count", "num"])
    assert chosen.columns == ("count", "num")


# ------------------------------------------------- Reference.test == functional == scipy


def test_ks_equals_functional_and_scipy(
    reference: Reference, reference_frame: pd.DataFrame, current_frame: pd.DataFrame
) -> None:
    result = reference.test(current_frame, "ks")
    functional = ks_2samp(reference_frame[NUMERIC], current_frame[NUMERIC])
    assert result.statistic.tolist() == functional.statistic.tolist()
    assert result.pvalue.tolist() == functional.pvalue.tolist()
    for j, column in enumerate(NUMERIC):
        statistic, pvalue = scipy_ks(reference_frame[column], current_frame[column])
        assert result.statistic[j] == statistic
        np.testing.assert_allclose(result.pvalue[j], pvalue, rtol=1e-9)
    assert result.n_reference.tolist() == [600] * 3
    assert result.n_current.tolist() == [400] * 3
    assert result.sufficient.all()


@pytest.mark.parametrize("method", ["exact", "asymp"])
def test_ks_method_is_passed_through(
    reference: Reference,
    reference_frame: pd.DataFrame,
    current_frame: pd.DataFrame,
    method: str,
) -> None:
    result = reference.test(current_frame, "ks", method=method)  # type: ignore[arg-type]
    functional = ks_2samp(reference_frame[NUMERIC], current_frame[NUMERIC], method=method)  # type: ignore[arg-type]
    assert result.pvalue.tolist() == functional.pvalue.tolist()
    expected = [
        stats.ks_2samp(reference_frame[c], current_frame[c], method=method).pvalue for c in NUMERIC
    ]
    np.testing.assert_allclose(result.pvalue, expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("binning", "bins"), [("quantile", 10), ("quantile", 4), ("evidently", 10)]
)
def test_psi_equals_functional(
    reference: Reference,
    reference_frame: pd.DataFrame,
    current_frame: pd.DataFrame,
    binning: str,
    bins: int,
) -> None:
    result = reference.test(current_frame, "psi", bins=bins, binning=binning)  # type: ignore[arg-type]
    functional = psi(reference_frame, current_frame, bins=bins, binning=binning)  # type: ignore[arg-type]
    np.testing.assert_allclose(result.statistic, functional.statistic, rtol=1e-15)
    assert np.isnan(result.pvalue).all()
    assert (result.statistic > 0).all()


def test_psi_bins_matter(reference: Reference, current_frame: pd.DataFrame) -> None:
    four = reference.test(current_frame, "psi", columns=["num"], bins=4).statistic
    twenty = reference.test(current_frame, "psi", columns=["num"], bins=20).statistic
    assert four[0] != twenty[0]


def test_chi2_equals_functional_and_scipy(
    reference: Reference, reference_frame: pd.DataFrame, current_frame: pd.DataFrame
) -> None:
    result = reference.test(current_frame, "chi2")
    functional = chi2(reference_frame[CATEGORICAL], current_frame[CATEGORICAL])
    assert result.statistic.tolist() == functional.statistic.tolist()
    assert result.pvalue.tolist() == functional.pvalue.tolist()
    for j, column in enumerate(CATEGORICAL):
        statistic, pvalue = scipy_chi2_labels(reference_frame[column], current_frame[column])
        np.testing.assert_allclose(result.statistic[j], statistic, rtol=1e-12)
        np.testing.assert_allclose(result.pvalue[j], pvalue, rtol=1e-9)


def test_prepared_sample_is_reused_across_tests(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    sample = reference.prepare(current_frame)
    for test in ("ks", "psi", "chi2"):
        direct = reference.test(current_frame, test)
        reused = reference.test(sample, test)
        assert reused.columns == direct.columns
        assert reused.statistic.tolist() == direct.statistic.tolist()
        np.testing.assert_array_equal(reused.pvalue, direct.pvalue)
    subset = reference.prepare(current_frame, columns=["num", "color"])
    assert reference.test(subset, "ks", columns=["num"]).statistic.tolist() == (
        reference.test(current_frame, "ks", columns=["num"]).statistic.tolist()
    )


def test_sample_of_other_kinds_is_rejected(
    reference_frame: pd.DataFrame, current_frame: pd.DataFrame
) -> None:
    as_categories = Reference(reference_frame[["count"]], kinds=["categorical"])
    as_numbers = Reference(reference_frame[["count"]])
    with pytest.raises(InputError, match="count"):
        as_numbers.test(as_categories.prepare(current_frame[["count"]]), "ks")


def test_array_reference_with_names_and_axis() -> None:
    rng = np.random.default_rng(3)
    ref = np.round(rng.normal(size=(3, 500)), 1)  # columns along axis 1
    cur = np.round(rng.normal(0.1, 1.0, (3, 300)), 1)
    reference = Reference(ref, columns=["a", "b", "c"], axis=1)
    result = reference.test(cur, "ks")
    assert result.columns == ("a", "b", "c")
    for j in range(3):
        statistic, pvalue = scipy_ks(ref[j], cur[j])
        assert result.statistic[j] == statistic
        np.testing.assert_allclose(result.pvalue[j], pvalue, rtol=1e-9)


# ------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_a_sha256_hex_of_the_content(reference_frame: pd.DataFrame) -> None:
    fingerprint = Reference(reference_frame).fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    assert Reference(reference_frame.copy()).fingerprint == fingerprint


def test_fingerprint_ignores_row_order(reference_frame: pd.DataFrame) -> None:
    frame = reference_frame.drop(columns=["rounded"])  # signed zeros: the next test
    frame.loc[3, "num"] = np.nan
    frame.loc[7, "color"] = None
    shuffled = frame.sample(frac=1.0, random_state=4).reset_index(drop=True)
    assert Reference(shuffled).fingerprint == Reference(frame).fingerprint


def test_fingerprint_ignores_row_order_with_signed_zeros(reference_frame: pd.DataFrame) -> None:
    """Rounding makes -0.0 next to 0.0 (np.round(-0.04, 1) is -0.0); they sort as equals, so
    their order after sorting follows the row order, and so do the bytes hashed."""
    assert (np.signbit(reference_frame["rounded"]) & (reference_frame["rounded"] == 0)).any()
    shuffled = reference_frame.sample(frac=1.0, random_state=4).reset_index(drop=True)
    assert Reference(shuffled).fingerprint == Reference(reference_frame).fingerprint
    zeros = np.array([[0.0], [-0.0], [1.0]])
    assert Reference(zeros).fingerprint == Reference(zeros[[1, 0, 2]]).fingerprint


def test_fingerprint_changes_with_content(reference_frame: pd.DataFrame) -> None:
    def edited(column: str, row: int, value: Any) -> pd.DataFrame:
        frame = reference_frame.copy()
        frame[column] = frame[column].astype(object) if column == "color" else frame[column]
        frame.loc[row, column] = value
        return frame

    red = int(np.flatnonzero(reference_frame["color"] == "red")[0])
    frames = {
        "one value by one ulp": edited("num", 0, np.nextafter(reference_frame["num"][0], 9.0)),
        "a value dropped to NaN": edited("num", 0, np.nan),
        "a category count": edited("color", red, "blue"),
        "a category relabelled": reference_frame.replace({"color": {"red": "crimson"}}),
        "a column renamed": reference_frame.rename(columns={"num": "num2"}),
        "a row fewer": reference_frame.iloc[1:],
    }
    fingerprints = {name: Reference(frame).fingerprint for name, frame in frames.items()}
    kinds = ["numeric", "numeric", "categorical", "categorical", "categorical", "categorical"]
    fingerprints["a kind declared"] = Reference(reference_frame, kinds=kinds).fingerprint
    assert Reference(reference_frame).fingerprint not in fingerprints.values()
    assert len(set(fingerprints.values())) == len(fingerprints)


# ------------------------------------------------------------------------- bad input


def test_missing_column_in_current_is_named(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    with pytest.raises(InputError) as error:
        reference.test(current_frame.drop(columns=["rounded"]), "ks")
    assert_actionable(error, "rounded")


def test_strings_in_a_numeric_column_are_rejected(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    current = current_frame.assign(num=current_frame["num"].astype(str))
    with pytest.raises(InputError) as error:
        reference.test(current, "ks")
    assert_actionable(error, "num")


def test_array_with_the_wrong_number_of_columns_is_rejected() -> None:
    rng = np.random.default_rng(5)
    reference = Reference(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    with pytest.raises(InputError) as error:
        reference.test(rng.normal(size=(100, 2)), "ks")
    assert_actionable(error, "2 column", "3 name")


def test_ks_named_for_a_categorical_column_is_rejected(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    with pytest.raises(InputError) as error:
        reference.test(current_frame, "ks", columns=["num", "color"])
    assert_actionable(error, "color", "ks")
    with pytest.raises(InputError) as error:
        reference.test(current_frame, "chi2", columns=["count"])
    assert_actionable(error, "count", "chi2")


def test_unknown_test_name_is_rejected(reference: Reference, current_frame: pd.DataFrame) -> None:
    with pytest.raises(InputError) as error:
        reference.test(current_frame, "wasserstein")
    assert_actionable(error, "wasserstein")


def test_unknown_column_name_is_rejected(reference: Reference, current_frame: pd.DataFrame) -> None:
    with pytest.raises(InputError) as error:
        reference.test(current_frame, "psi", columns=["num", "nope"])
    assert_actionable(error, "nope")


def test_unknown_correction_name_is_rejected(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    """Like an unknown test name: InputError (a ValueError), naming it and the choices."""
    with pytest.raises(InputError) as error:
        reference.test(current_frame, "ks", correction="holm")
    assert_actionable(error, "holm")


# ------------------------------------------------------------------- data that must work


def test_nan_and_inf_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], 300)})
    cur = pd.DataFrame({"x": rng.normal(0.2, 1.0, 200), "c": rng.choice(["a", "b"], 200)})
    ref.loc[:4, "x"] = np.nan
    cur.loc[:9, "x"] = [np.nan] * 4 + [np.inf] * 3 + [-np.inf] * 3
    cur.loc[:6, "c"] = None
    reference = Reference(ref)
    ks = reference.test(cur, "ks")
    statistic, pvalue = scipy_ks(ref["x"], cur["x"])
    assert ks.statistic[0] == statistic
    np.testing.assert_allclose(ks.pvalue[0], pvalue, rtol=1e-9)
    assert (ks.n_reference[0], ks.n_current[0], ks.n_dropped[0]) == (295, 190, 10)
    psi_result = reference.test(cur, "psi")
    assert psi_result.n_dropped.tolist() == [10, 7]
    expected_psi = psi(finite(ref["x"]), finite(cur["x"])).statistic
    np.testing.assert_allclose(psi_result.statistic[0], expected_psi, rtol=1e-15)
    chi = reference.test(cur, "chi2")
    expected = scipy_chi2_labels(ref["c"], cur["c"])
    np.testing.assert_allclose([chi.statistic[0], chi.pvalue[0]], expected, rtol=1e-9)
    assert (chi.n_current[0], chi.n_dropped[0]) == (193, 7)


def test_too_few_values_is_insufficient_and_never_drifts() -> None:
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    cur = pd.DataFrame({"a": rng.normal(5.0, 1.0, 100), "b": rng.normal(5.0, 1.0, 100)})
    cur.loc[20:, "b"] = np.nan  # 20 usable values in b: below the default 30
    result = Reference(ref).test(cur, "ks")
    assert result.sufficient.tolist() == [True, False]
    assert result.drifted().tolist() == [True, False]
    assert result.share_drifted() == 1.0  # one drifted out of one sufficient
    ok, short = result.rows()
    assert ok.status is ColumnStatus.OK and ok.drifted is True
    assert short.status is ColumnStatus.INSUFFICIENT
    assert (short.n_current, short.n_dropped) == (20, 80)
    assert (short.statistic, short.pvalue, short.pvalue_adjusted, short.drifted) == (None,) * 4
    lenient = Reference(ref).test(cur, "ks", min_samples=20)
    assert lenient.sufficient.tolist() == [True, True]
    assert lenient.drifted().tolist() == [True, True]


def test_too_few_reference_values_is_insufficient() -> None:
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"a": np.r_[rng.normal(size=10), np.full(200, np.nan)]})
    result = Reference(ref).test(pd.DataFrame({"a": rng.normal(9.0, 1.0, 200)}), "psi")
    assert result.sufficient.tolist() == [False]
    assert result.drifted().tolist() == [False]
    assert np.isnan(result.share_drifted())
    assert result.rows()[0].statistic is None


@pytest.mark.parametrize("test", ["ks", "psi"])
def test_all_nan_current_column_is_insufficient(test: str) -> None:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    cur = pd.DataFrame({"a": rng.normal(size=80), "b": np.full(80, np.nan)})
    result = Reference(ref).test(cur, test)
    assert result.sufficient.tolist() == [True, False]
    assert (result.n_current[1], result.n_dropped[1]) == (0, 80)
    assert result.rows()[1].status is ColumnStatus.INSUFFICIENT


def test_all_nan_reference_column_is_insufficient() -> None:
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"a": np.full(100, np.nan), "b": rng.normal(size=100)})
    cur = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    for test in ("ks", "psi"):
        result = Reference(ref).test(cur, test)
        assert result.sufficient.tolist() == [False, True]
        assert result.n_reference.tolist() == [0, 100]


def test_constant_equal_columns_have_ks_zero_and_pvalue_one() -> None:
    reference = Reference(pd.DataFrame({"x": np.full(500, 2.5)}))
    result = reference.test(pd.DataFrame({"x": np.full(200, 2.5)}), "ks")
    assert (result.statistic[0], result.pvalue[0]) == scipy_ks(np.full(500, 2.5), np.full(200, 2.5))
    assert (result.statistic[0], result.pvalue[0]) == (0.0, 1.0)
    assert not result.drifted()[0]


def test_constant_equal_columns_have_psi_zero() -> None:
    reference = Reference(pd.DataFrame({"x": np.full(500, 2.5)}))
    result = reference.test(pd.DataFrame({"x": np.full(200, 2.5)}), "psi")
    assert result.statistic[0] == 0.0
    assert not result.drifted()[0]


@pytest.mark.parametrize("value", [1.5, 3.5])
def test_constant_but_different_columns_drift_by_ks(value: float) -> None:
    reference = Reference(pd.DataFrame({"x": np.full(500, 2.5)}))
    result = reference.test(pd.DataFrame({"x": np.full(200, value)}), "ks")
    assert result.statistic[0] == 1.0
    assert result.drifted()[0]


@pytest.mark.parametrize("value", [1.5, 3.5])
def test_constant_but_different_columns_drift_by_psi(value: float) -> None:
    reference = Reference(pd.DataFrame({"x": np.full(500, 2.5)}))
    result = reference.test(pd.DataFrame({"x": np.full(200, value)}), "psi")
    assert result.drifted()[0], result.statistic


@pytest.mark.parametrize("test", ["ks", "psi", "chi2"])
def test_empty_current_window_is_all_insufficient(
    reference: Reference, current_frame: pd.DataFrame, test: str
) -> None:
    result = reference.test(current_frame.iloc[:0], test)
    assert not result.sufficient.any()
    assert result.n_current.tolist() == [0] * len(result.columns)
    assert not result.drifted().any()
    assert np.isnan(result.share_drifted())
    assert {row.status for row in result.rows()} == {ColumnStatus.INSUFFICIENT}


def test_empty_current_array_is_all_insufficient() -> None:
    reference = Reference(np.random.default_rng(11).normal(size=(100, 2)), columns=["a", "b"])
    result = reference.test(np.empty((0, 2)), "ks")
    assert result.sufficient.tolist() == [False, False]


def test_nullable_int64_with_na_is_numeric() -> None:
    rng = np.random.default_rng(12)
    ref_values = rng.integers(0, 50, 300).astype(object)
    cur_values = rng.integers(5, 55, 200).astype(object)
    ref_values[:6] = pd.NA
    cur_values[:11] = pd.NA
    ref = pd.DataFrame({"n": pd.array(ref_values, dtype="Int64")})
    cur = pd.DataFrame({"n": pd.array(cur_values, dtype="Int64")})
    reference = Reference(ref)
    assert reference.kinds == (ColumnKind.NUMERIC,)
    result = reference.test(cur, "ks")
    statistic, pvalue = scipy_ks(ref_values[6:].astype(float), cur_values[11:].astype(float))
    assert result.statistic[0] == statistic
    np.testing.assert_allclose(result.pvalue[0], pvalue, rtol=1e-9)
    assert (result.n_reference[0], result.n_current[0], result.n_dropped[0]) == (294, 189, 11)


@pytest.mark.parametrize("reference_dtype", ["int64", "object"])
def test_integer_categories_match_whole_floats_from_nan(reference_dtype: str) -> None:
    """Categories 1, 2, 3 in the reference; the current's column became float (NaN in it)."""
    rng = np.random.default_rng(13)
    ref_codes = rng.integers(1, 4, 400)
    cur_codes = rng.choice([1, 2, 3], 300, p=[0.5, 0.3, 0.2]).astype(float)
    cur_codes[:15] = np.nan
    ref = pd.DataFrame({"code": pd.Series(ref_codes).astype(reference_dtype)})
    kinds = ["categorical"] if reference_dtype == "int64" else None
    reference = Reference(ref, kinds=kinds)
    assert reference.kinds == (ColumnKind.CATEGORICAL,)
    result = reference.test(pd.DataFrame({"code": cur_codes}), "chi2")
    expected = scipy_chi2_labels(ref_codes.tolist(), cur_codes[15:].astype(int).tolist())
    np.testing.assert_allclose([result.statistic[0], result.pvalue[0]], expected, rtol=1e-9)
    assert (result.n_current[0], result.n_dropped[0]) == (285, 15)
    same = reference.test(pd.DataFrame({"code": ref_codes.astype(float)}), "psi")
    assert same.statistic[0] == 0.0  # identical labels, not "1" against "1.0"


def test_category_dtype_with_missing_values() -> None:
    rng = np.random.default_rng(14)
    ref = pd.DataFrame({"g": pd.Categorical(rng.choice(["x", "y", "z"], 300))})
    cur_values = rng.choice(["x", "y", "z"], 200).astype(object)
    cur_values[:8] = None
    cur = pd.DataFrame({"g": pd.Categorical(cur_values)})
    result = Reference(ref).test(cur, "chi2")
    expected = scipy_chi2_labels(ref["g"].tolist(), cur_values[8:].tolist())
    np.testing.assert_allclose([result.statistic[0], result.pvalue[0]], expected, rtol=1e-9)
    assert result.n_dropped.tolist() == [8]


@pytest.mark.parametrize("dtype", ["string", "boolean"])
def test_nullable_categorical_with_na(dtype: str) -> None:
    """pandas' nullable string/boolean columns mark missing values with pd.NA: dropped, counted."""
    rng = np.random.default_rng(15)
    pool = ["u", "v", "w"] if dtype == "string" else [True, False]
    ref_values = rng.choice(np.array(pool, dtype=object), 300)
    cur_values = rng.choice(np.array(pool, dtype=object), 200)
    cur_values[:12] = pd.NA
    ref = pd.DataFrame({"s": pd.array(ref_values, dtype=dtype)})
    cur = pd.DataFrame({"s": pd.array(cur_values, dtype=dtype)})
    reference = Reference(ref)
    assert reference.kinds == (ColumnKind.CATEGORICAL,)
    result = reference.test(cur, "chi2")
    expected = scipy_chi2_labels(ref_values.tolist(), cur_values[12:].tolist())
    np.testing.assert_allclose([result.statistic[0], result.pvalue[0]], expected, rtol=1e-9)
    assert (result.n_current[0], result.n_dropped[0]) == (188, 12)


def test_large_whole_float_category_labels() -> None:
    """64-bit integer ids read back as float (NaN in the column) must not crash the labelling."""
    ids = np.array([2.0**63, 2.0**64, 1e20], dtype=np.float64)
    rng = np.random.default_rng(16)
    ref = pd.DataFrame({"id": rng.choice(ids, 200)})
    cur_values = rng.choice(ids, 100)
    cur_values[:3] = np.nan
    reference = Reference(ref, kinds=["categorical"])
    result = reference.test(pd.DataFrame({"id": cur_values}), "chi2")
    expected = scipy_chi2_labels(ref["id"].tolist(), cur_values[3:].tolist())
    np.testing.assert_allclose([result.statistic[0], result.pvalue[0]], expected, rtol=1e-9)


# --------------------------------------------------------------------- drift semantics


def test_default_thresholds_come_from_the_registry(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    for test in DriftTest:
        result = reference.test(current_frame, test)
        assert result.threshold == REGISTRY[test].default_threshold
    ks = reference.test(current_frame, "ks")
    assert ks.drifted().tolist() == (ks.pvalue < 0.05).tolist()
    psi_result = reference.test(current_frame, "psi")
    assert psi_result.drifted().tolist() == (psi_result.statistic >= 0.1).tolist()


def test_pvalue_tests_drift_strictly_below_the_threshold(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    for test in ("ks", "chi2"):
        result = reference.test(current_frame, test)
        for j, p in enumerate(result.pvalue):
            assert not result.drifted(threshold=float(p))[j]
            assert result.drifted(threshold=float(np.nextafter(p, 1.0)))[j]


def test_psi_drifts_at_or_above_the_threshold(
    reference: Reference, current_frame: pd.DataFrame
) -> None:
    result = reference.test(current_frame, "psi")
    for j, value in enumerate(result.statistic):
        assert result.drifted(threshold=float(value))[j]
        assert not result.drifted(threshold=float(np.nextafter(value, np.inf)))[j]
    assert reference.test(current_frame, "psi", threshold=np.inf).drifted().sum() == 0


def many_columns() -> tuple[DriftResult, np.ndarray]:
    """200 null columns and 3 strongly drifted ones; KS p-values."""
    rng = np.random.default_rng(17)
    ref = rng.normal(size=(300, 203))
    cur = rng.normal(size=(300, 203))
    cur[:, :3] += 1.0
    reference = Reference(ref)
    result = reference.test(cur, "ks", correction="bh")
    return result, result.pvalue


def test_bh_flags_fewer_columns_than_no_correction() -> None:
    result, p = many_columns()
    none = result.drifted(correction="none")
    bh = result.drifted()  # the correction given to test()
    bonferroni = result.drifted(correction="bonferroni")
    assert none[:3].all() and bh[:3].all() and bonferroni[:3].all()
    assert bh.sum() < none.sum()
    assert not (bh & ~none).any()
    assert bh.tolist() == (stats.false_discovery_control(p) < 0.05).tolist()
    assert bonferroni.tolist() == (np.minimum(p * p.size, 1.0) < 0.05).tolist()
    np.testing.assert_allclose(result.pvalue_adjusted(), stats.false_discovery_control(p))
    assert result.share_drifted() == bh.sum() / 203
    assert result.share_drifted(correction="none") == none.sum() / 203


def test_corrections_count_only_sufficient_columns() -> None:
    rng = np.random.default_rng(18)
    ref = rng.normal(size=(200, 4))
    cur = rng.normal(0.1, 1.0, (200, 4))
    cur[10:, 3] = np.nan  # 10 usable values: insufficient
    result = Reference(ref).test(cur, "ks", correction="bonferroni")
    adjusted = result.pvalue_adjusted()
    assert np.isnan(adjusted[3])
    np.testing.assert_allclose(adjusted[:3], np.minimum(result.pvalue[:3] * 3, 1.0))
    rows = result.rows()
    assert [r.pvalue_adjusted for r in rows[:3]] == adjusted[:3].tolist()
    assert rows[3].pvalue_adjusted is None


def test_rows_mirror_the_arrays(reference: Reference, current_frame: pd.DataFrame) -> None:
    for test in DriftTest:
        result = reference.test(current_frame, test)
        rows = result.rows()
        assert [r.column for r in rows] == list(result.columns)
        assert all(r.test is test for r in rows)
        assert [r.statistic for r in rows] == result.statistic.tolist()
        assert [r.drifted for r in rows] == result.drifted().tolist()
        assert [r.n_reference for r in rows] == result.n_reference.tolist()
        if REGISTRY[test].has_pvalue:
            assert [r.pvalue for r in rows] == result.pvalue.tolist()
        else:
            assert {r.pvalue for r in rows} == {None}
