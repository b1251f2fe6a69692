"""Every incident bundle any test of this session wrote replays bit for bit.

This directory sorts last, so it runs after the others: it looks for bundles under the session's
temporary directory (daemons started by the end-to-end tests, the runner's incident in the
integration tests, ...), or under $MLWATCHDOG_TEST_BUNDLES: `make test` runs the suite on
several workers first, then this on their temporary folder. Run alone, it records an incident
first, so it never passes on nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlwatchdog.replay import load_bundle
from mlwatchdog.replay.bundle import FORMAT
from tests.integration.bundle_scenario import run_incident


def bundles_under(base: Path) -> dict[Path, dict[str, Any]]:
    """Bundle folders and their manifests; other tools' manifest.json (schemathesis's cache) are
    not bundles."""
    found = {}
    for path in sorted(base.glob("**/manifest.json")):
        manifest = json.loads(path.read_text())
        if isinstance(manifest, dict) and manifest.get("format") == FORMAT:
            found[path.parent] = manifest
    return found


def test_every_bundle_written_in_this_session_replays_bit_for_bit(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    earlier = os.environ.get("MLWATCHDOG_TEST_BUNDLES")
    base = Path(earlier).resolve() if earlier else tmp_path_factory.getbasetemp()
    found = bundles_under(base)
    if not found:
        base = tmp_path_factory.getbasetemp()
        run_incident(tmp_path_factory.mktemp("incident"))
        found = bundles_under(base)
    assert found, f"no bundle under {base}"
    failures, by_reference = {}, []
    for folder, manifest in found.items():
        reference = manifest["observation"]["reference"]
        if reference["fingerprint"] and not reference["file"]:
            by_reference.append(folder)  # too large to copy, by configuration: not replayable
            continue
        differences = load_bundle(str(folder)).replay().differences()
        if differences:
            failures[str(folder.relative_to(base))] = differences
    assert not failures, failures
    assert len(by_reference) < len(found), "every bundle was recorded without its reference"
    print(f"{len(found) - len(by_reference)} bundle(s) replayed bit for bit")
