"""Incident bundles: written by the daemon's runner on every state change and decision, read back
and re-run bit for bit, asked "what if", kept within their retention, on local disk or any fsspec
URL, and never replayed silently when their data changed."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import structlog

from mlwatchdog.replay import BundleError, list_bundles, load_bundle
from mlwatchdog.replay.bundle import BundleWriter
from mlwatchdog.rules.schema import Bundles
from tests.integration.bundle_scenario import TARGET, run_incident


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("incident")
    run_incident(folder)
    return folder


def bundles(incident: Path) -> list[str]:
    return list_bundles(str(incident / "bundles"))


def the(incident: Path, event: str) -> str:
    [found] = [b for b in bundles(incident) if b.endswith(event)]
    return found


def test_every_change_of_the_incident_has_a_bundle_that_replays_bit_for_bit(
    incident: Path,
) -> None:
    events = [Path(b).name.split(f"-{TARGET}-")[1] for b in bundles(incident)]
    assert events[:2] == ["new-to-healthy", "healthy-to-degraded"]
    assert "decision-rollback" in events and events[-1] == "decision-escalate"
    for path in bundles(incident):
        replayed = load_bundle(path).replay()
        assert replayed.differences() == [], path


def test_the_rollback_bundle_holds_what_the_decision_was_made_from(incident: Path) -> None:
    bundle = load_bundle(the(incident, "decision-rollback"))
    manifest = bundle.manifest
    assert manifest["state_before"]["phase"] == "degraded"
    assert manifest["state_after"]["phase"] == "verifying"
    [decision] = manifest["evaluation"]["decisions"]
    assert decision["kind"] == "rollback" and decision["dry_run"] is True
    [outcome] = manifest["outcomes"]
    assert outcome["ok"] and outcome["dry_run"]
    [action] = manifest["actions"]  # the audit record: the planned requests of the dry-run
    assert action["result"] == "dry_run" and action["incident"] == decision["incident"]
    assert [r["method"] for r in action["requests"]] == ["PATCH", "PATCH"]
    observed = manifest["observation"]
    assert observed["samples"]["rows"] == len(bundle.recorded.observation.samples) > 100
    assert observed["reference"]["file"] == "reference.parquet"
    assert manifest["config"]["targets"][0]["for"] == "30s"  # rules.yaml's own spelling
    assert bundle.replay().rolls_back


def test_what_if_a_longer_for_or_no_rollback(incident: Path) -> None:
    """A bundle's what-if re-runs its one evaluation from the recorded state: settings that act
    at that step (for, the rollback) change the outcome; timers already running stay as
    recorded (a range replay with changed settings re-runs the history: test_replay)."""
    bundle = load_bundle(the(incident, "decision-rollback"))
    assert bundle.what_if().rolls_back  # no change: the same decision
    longer = bundle.what_if(**{"for": "10m"})
    assert not longer.rolls_back and longer.state_after.phase == "degraded"
    alert_only = bundle.what_if(rollback={"enabled": False})
    assert [str(d.kind) for d in alert_only.decisions] == ["escalate"]
    assert "no rollback is configured" in alert_only.decisions[0].reasons[-1]
    with pytest.raises(BundleError, match="no check 'nope'"):
        bundle.what_if(checks={"nope": {"threshold": 1}})


def test_changed_data_is_never_replayed_silently(incident: Path, tmp_path: Path) -> None:
    source = Path(the(incident, "decision-rollback"))
    copy = tmp_path / source.name
    copy.mkdir()
    for file in source.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    frame = pd.read_parquet(copy / "current.parquet")
    frame["income"] = frame["income"] * 0.5  # a changed window: different results
    frame.to_parquet(copy / "current.parquet", index=False)
    assert "results" in load_bundle(str(copy)).replay().differences()

    reference = pd.read_parquet(copy / "reference.parquet")
    reference.iloc[:10].to_parquet(copy / "reference.parquet", index=False)
    with pytest.raises(BundleError, match="does not match its fingerprint"):
        load_bundle(str(copy))
    (copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(str(copy))


def test_retention_and_an_fsspec_destination(tmp_path: Path) -> None:
    url = f"memory://bundles-{tmp_path.name}"
    run_incident(tmp_path, bundles={"path": url, "keep": 3})
    kept = list_bundles(url)
    assert len(kept) == 3 and kept[-1].endswith("decision-escalate")
    assert all(k.startswith("memory://") for k in kept)
    for path in kept:
        assert load_bundle(path).replay().same_as_recorded


def test_a_large_reference_is_recorded_by_fingerprint_and_source(tmp_path: Path) -> None:
    run_incident(tmp_path, bundles={"max_reference_cells": 10})
    path = the(tmp_path, "decision-rollback")
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    reference = manifest["observation"]["reference"]
    assert reference["file"] is None and len(reference["fingerprint"]) == 64
    assert reference["source"] == "training"
    assert not (Path(path) / "reference.parquet").exists()
    with pytest.raises(BundleError, match=r"too large to copy .* source 'training'"):
        load_bundle(path)


def test_the_replay_command_on_bundles(incident: Path) -> None:
    command = shutil.which("mlwatchdog") or str(Path(sys.executable).parent / "mlwatchdog")
    every = subprocess.run(
        [command, "replay", "--bundle", str(incident / "bundles")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert every.returncode == 0, every.stderr
    lines = every.stdout.splitlines()
    assert len(lines) == len(bundles(incident))
    assert all("same as recorded" in line for line in lines)
    assert any("decisions: rollback" in line for line in lines)

    what_if = subprocess.run(
        [command, "replay", "--bundle", the(incident, "decision-rollback"), "--set", "for=10m"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert what_if.returncode == 0, what_if.stderr
    assert "what if {'for': '10m'}: decisions rollback -> none, state verifying -> degraded" in (
        what_if.stdout
    )
    bad = subprocess.run(
        [command, "replay", "--bundle", the(incident, "decision-rollback"), "--set", "nope"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "write KEY=VALUE" in bad.stderr


def test_bundles_of_one_reference_share_one_copy(incident: Path) -> None:
    """Every bundle holds its reference.parquet (a folder copied elsewhere is whole), and on a
    local disk they are hard links to one copy: thousands of targets sharing a reference write
    it once, not once a target."""
    with_reference = [Path(b) / "reference.parquet" for b in bundles(incident)]
    with_reference = [p for p in with_reference if p.exists()]
    assert len(with_reference) >= 3
    (shared,) = (incident / "bundles" / ".references").iterdir()
    assert {p.stat().st_ino for p in with_reference} == {shared.stat().st_ino}
    assert shared.stat().st_nlink == len(with_reference) + 1
    reference = load_bundle(str(with_reference[0].parent)).recorded.observation.reference
    assert reference is not None and shared.name == f"{reference.fingerprint}.parquet"


def test_a_reference_is_read_and_encoded_once_and_its_copy_pruned(
    incident: Path, tmp_path: Path
) -> None:
    recorded = load_bundle(the(incident, "decision-rollback")).recorded
    frame = pd.read_parquet(Path(the(incident, "decision-rollback")) / "reference.parquet")
    reads: list[int] = []

    def rows() -> pd.DataFrame:
        reads.append(1)
        return frame

    log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
    writer = BundleWriter(Bundles(keep=2), str(tmp_path / "b"), log)
    written = [writer.write(replace(recorded, reference_frame=rows), f"x{i}") for i in range(3)]
    assert reads == [1], "the rows were read again for a reference already copied"
    assert len(list_bundles(str(tmp_path / "b"))) == 2
    for path in written[1:]:
        assert load_bundle(path).replay().same_as_recorded
    (shared,) = (tmp_path / "b" / ".references").iterdir()
    assert shared.stat().st_nlink == 3
    # A bundle written again (the runner retries one it could not finish) links anew.
    again = writer.write(replace(recorded, reference_frame=rows), "x2")
    assert again == written[2] and load_bundle(again).replay().same_as_recorded
    assert shared.stat().st_nlink == 3 and reads == [1]
    # Bundles without the reference push the others out: its copy goes with the last of them.
    for i in range(3, 5):
        writer.write(replace(recorded, reference_frame=None), f"x{i}")
    assert list((tmp_path / "b" / ".references").iterdir()) == []


def test_a_bundle_records_its_own_target_of_many(incident: Path, tmp_path: Path) -> None:
    """A rules file of thousands of targets (for_each) would otherwise be most of every manifest."""
    recorded = load_bundle(the(incident, "decision-rollback")).recorded
    others = [recorded.target.model_copy(update={"name": f"other-{i}"}) for i in range(50)]
    many = recorded.config.model_copy(update={"targets": [*others, recorded.target]})
    log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
    writer = BundleWriter(Bundles(), str(tmp_path / "b"), log)
    rows = pd.read_parquet(Path(the(incident, "decision-rollback")) / "reference.parquet")
    path = writer.write(replace(recorded, config=many, reference_frame=rows), "decision-rollback")
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    assert [t["name"] for t in manifest["config"]["targets"]] == [recorded.target.name]
    assert manifest["config"]["sources"].keys() == recorded.config.sources.keys()
    assert load_bundle(path).replay().same_as_recorded
