"""`mlwatchdog evaluate` end to end: the installed command on the bundled example data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"
sys.path.insert(0, str(ROOT / "examples"))
import make_data  # noqa: E402

from mlwatchdog.demo import DRIFTED_COLUMNS  # noqa: E402

COMMAND = shutil.which("mlwatchdog") or str(Path(sys.executable).parent / "mlwatchdog")


def evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, "evaluate", *args], capture_output=True, text=True, timeout=120, check=False
    )


def bundled(*extra: str) -> subprocess.CompletedProcess[str]:
    return evaluate(
        "--reference", str(DATA / "reference.parquet"), "--current", str(DATA / "current.parquet"),
        *extra,
    )  # fmt: skip


def test_committed_example_data_is_what_the_script_writes(tmp_path: Path) -> None:
    make_data.main(tmp_path)
    for name in ("reference.parquet", "current.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / name), pd.read_parquet(DATA / name)
        )


def test_table_flags_exactly_the_columns_the_generator_drifted() -> None:
    done = bundled()
    assert done.returncode == 0, done.stderr
    lines = {
        tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in done.stdout.splitlines()
    }
    drift_by_column: dict[str, set[str]] = {}
    for cells in lines:
        if len(cells) == 9:
            drift_by_column.setdefault(cells[0], set()).add(cells[8])
    columns = "age income credit_score tenure_months n_products channel region score"
    assert set(drift_by_column) == set(columns.split())
    flagged = {c for c, verdicts in drift_by_column.items() if "yes" in verdicts}
    assert flagged == set(DRIFTED_COLUMNS)
    assert "Drift in 4 of 8 column(s)" in done.stdout


def test_json_rows_agree_with_scipy_on_the_files() -> None:
    done = bundled("--format", "json", "--test", "ks")
    assert done.returncode == 0, done.stderr
    rows = {r["column"]: r for r in json.loads(done.stdout)}
    ref = pd.read_parquet(DATA / "reference.parquet")
    cur = pd.read_parquet(DATA / "current.parquet")
    for column, row in rows.items():
        a, b = ref[column].dropna().to_numpy(), cur[column].dropna().to_numpy()
        expected = stats.ks_2samp(a, b)
        assert row["test"] == "ks"
        assert row["statistic"] == expected.statistic
        assert row["pvalue"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert row["n_dropped"] == int(cur[column].isna().sum())
        assert row["drifted"] == bool(expected.pvalue < 0.05)


def test_fail_on_drift_exit_code_and_no_drift_case(tmp_path: Path) -> None:
    assert bundled("--fail-on-drift").returncode == 3
    ref = DATA / "reference.parquet"
    same = evaluate("--reference", str(ref), "--current", str(ref), "--fail-on-drift")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "No drift in 8 column(s)" in same.stdout


def test_csv_and_jsonl_inputs_give_the_same_table(tmp_path: Path) -> None:
    ref = pd.read_parquet(DATA / "reference.parquet")
    cur = pd.read_parquet(DATA / "current.parquet")
    ref.to_csv(tmp_path / "ref.csv", index=False)
    with (tmp_path / "cur.jsonl").open("w") as out:  # json.dumps keeps every float digit
        for record in cur.to_dict(orient="records"):
            out.write(json.dumps({k: None if v != v else v for k, v in record.items()}) + "\n")
    mixed = evaluate(
        "--reference", str(tmp_path / "ref.csv"), "--current", str(tmp_path / "cur.jsonl"),
        "--format", "json",
    )  # fmt: skip
    parquet = bundled("--format", "json")
    assert mixed.returncode == 0, mixed.stderr
    got, want = json.loads(mixed.stdout), json.loads(parquet.stdout)
    assert [(r["column"], r["test"], r["drifted"]) for r in got] == [
        (r["column"], r["test"], r["drifted"]) for r in want
    ]
    assert [r["statistic"] for r in got] == [r["statistic"] for r in want]


def test_bad_input_exits_1_with_a_message_naming_the_problem(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("x")
    pd.DataFrame({"age": ["old", "young"] * 20}).to_parquet(tmp_path / "strings.parquet")
    ref, cur = str(DATA / "reference.parquet"), str(DATA / "current.parquet")
    cases = [
        (["--reference", str(tmp_path / "missing.parquet"), "--current", cur], "no such file"),
        (["--reference", str(tmp_path / "data.txt"), "--current", cur], "unknown table format"),
        (["--reference", ref, "--current", cur, "--column", "nope"], "nope"),
        (  # numeric in the reference, strings in the current window
            ["--reference", ref, "--current", str(tmp_path / "strings.parquet"), "--column", "age"],
            "column 'age' is numeric in the reference",
        ),
    ]
    for args, message in cases:
        done = evaluate(*args)
        assert done.returncode == 1, (args, done.stdout)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
