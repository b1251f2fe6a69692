"""The notebooks under notebooks/: each runs top to bottom in a fresh kernel of this venv's Python
(cwd a temporary folder, the repo importable, HTTP(S) proxies pointed at a closed port so nothing
can download), and each is committed without outputs or execution counts.

To strip outputs before committing: `.venv/bin/python tests/notebooks/test_notebooks.py`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "mlwatchdog-notebooks"
CELL_TIMEOUT = 120  # seconds per cell
NOTEBOOK_TIMEOUT = 300  # seconds per notebook, kernel start included (each takes ~20 s)
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, a download fails at once


def test_the_documented_notebooks_are_there() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"incident_replay.ipynb", "threshold_tuning.ipynb", "real_drift.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_or_execution_counts(path: Path) -> None:
    notebook = json.loads(path.read_text())
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        where = f"{path.name} cell {i}"
        assert cell["outputs"] == [], f"{where} has outputs: strip them (see this module's doc)"
        assert cell["execution_count"] is None, f"{where} has an execution count"
        assert "execution" not in cell.get("metadata", {}), f"{where} has execution timings"
    assert "widgets" not in notebook["metadata"], f"{path.name} has widget state"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom_offline(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    _kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("TMPDIR", str(temp))  # the notebooks write under tempfile.mkdtemp()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), _env("PYTHONPATH")])))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(proxy, CLOSED_PORT)
    for bypass in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(bypass, raising=False)

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(work)}},
    )
    started = time.monotonic()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    print(f"{path.name}: {time.monotonic() - started:.1f} s")

    assert list(work.iterdir()) == [], "the notebook wrote into its working directory"
    assert any(temp.iterdir()), "the notebook wrote nothing under tempfile's folder"
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []


def _kernelspec(jupyter: Path) -> None:
    """A kernel of this very interpreter: a `python3` spec elsewhere (user-wide, another venv)
    could start a Python without mlwatchdog."""
    folder = jupyter / "kernels" / KERNEL
    folder.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mlwatchdog notebooks (test)",
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))


def _env(name: str) -> str:
    return os.environ.get(name, "")


def strip_outputs(path: Path) -> bool:
    """Clear outputs, execution counts, timings and widget state in place; True when the file
    changed."""
    text = path.read_text()
    notebook: dict[str, Any] = json.loads(text)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            cell.get("metadata", {}).pop("execution", None)
    metadata = notebook["metadata"]
    metadata.pop("widgets", None)
    # The kernel adds its Python version: machine-specific, so left out.
    metadata["language_info"] = {"name": metadata.get("language_info", {}).get("name", "python")}
    stripped = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if stripped == text:
        return False
    path.write_text(stripped)
    return True


if __name__ == "__main__":
    for notebook_path in NOTEBOOKS:
        if strip_outputs(notebook_path):
            print(f"stripped {notebook_path.relative_to(ROOT)}")
