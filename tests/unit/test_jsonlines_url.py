"""Records kept as objects under an fsspec URL are read back wherever the root is, also under a
dot folder (`make test` runs in .test-tmp): only a writer's hidden objects are skipped."""

from __future__ import annotations

from pathlib import Path

from mlwatchdog.jsonlines import JsonLines


def test_records_under_a_dot_folder_are_read_back(tmp_path: Path) -> None:
    root = tmp_path / ".hidden-parent" / "audit"
    records = JsonLines(f"file://{root}")
    assert records.append({"n": 1}) and records.append({"n": 2})
    again = JsonLines(f"file://{root}")  # a new pod: nothing pending, all from storage
    assert [r["n"] for r in again.entries()] == [1, 2]
    assert [r["n"] for r in again.tail(limit=1)] == [2]


def test_a_writers_hidden_object_is_not_a_record(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    records = JsonLines(f"file://{root}")
    assert records.append({"n": 1})
    [day] = [p for p in root.iterdir() if p.is_dir()]
    (day / ".partial.jsonl").write_text('{"n": 99}\n')
    assert [r["n"] for r in JsonLines(f"file://{root}").entries()] == [1]
