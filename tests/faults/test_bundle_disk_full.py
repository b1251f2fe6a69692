"""A bundle whose manifest cannot be written (the disk fills up after its data files) is not taken
for a complete one: nothing lists it, and writing it again once there is space (what the runner
does with a bundle that failed) gives a bundle that loads and replays bit for bit."""

from __future__ import annotations

import errno
import io
import math
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import structlog

from mlwatchdog.replay import BundleWriter, Recorded, list_bundles, load_bundle
from mlwatchdog.rules.schema import Bundles
from tests.faults.disk import Filler, tmpfs


@pytest.fixture
def recorded(rollback_bundle: str) -> Recorded:
    """The rollback decision of an incident the daemon's runner recorded, with its reference."""
    frame = pd.read_parquet(Path(rollback_bundle) / "reference.parquet")
    return replace(load_bundle(rollback_bundle).recorded, reference_frame=frame)


def test_a_manifest_cut_by_a_full_disk_leaves_no_bundle_that_looks_complete(
    tmp_path: Path, recorded: Recorded
) -> None:
    log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
    # The data files' size, from a write where there is room.
    sized = Path(BundleWriter(Bundles(), str(tmp_path / "sized"), log).write(recorded, "x"))
    with tmpfs(tmp_path / "disk", "8m") as disk:
        writer = BundleWriter(Bundles(), str(disk / "bundles"), log)
        block = os.statvfs(disk).f_frsize
        data = sum(math.ceil(p.stat().st_size / block) * block for p in sized.glob("*.parquet"))
        filler = Filler(disk)
        filler.fill()
        filler.leave(data)  # room for the data files, none for the manifest

        with pytest.raises(OSError) as failed:
            writer.write(recorded, "decision-rollback")
        assert failed.value.errno == errno.ENOSPC
        [folder] = [p for p in (disk / "bundles").iterdir() if p.name != ".references"]
        assert (folder / "current.parquet").exists()  # the data went in; the manifest did not
        assert list_bundles(str(disk / "bundles")) == []

        filler.free()  # the runner writes the bundle it kept again
        [path] = [writer.write(recorded, "decision-rollback")]
        assert list_bundles(str(disk / "bundles")) == [path]
        assert load_bundle(path).replay().differences() == []
