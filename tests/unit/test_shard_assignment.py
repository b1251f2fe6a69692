"""Shard assignment (mlwatchdog/daemon/shards.py): a stable hash of the target name, the Lease of
each shard, and the takeover delay that keeps one replica from taking every shard."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from mlwatchdog.daemon.shards import (
    assignment,
    fnv1a_32,
    lease_name,
    lease_names,
    shard_of,
    takeover_delay,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    # The FNV-1a 32-bit test vectors of the reference (Fowler, Noll, Vo: test_fnv.c), the hash
    # Go's hash/fnv New32a (and so Argo CD's shard assignment) computes.
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)],
)
def test_fnv1a_matches_the_reference_vectors(text: bytes, expected: int) -> None:
    assert fnv1a_32(text) == expected


def test_a_target_lands_on_the_same_shard_in_every_process() -> None:
    """Python's hash() of a str changes per process (PYTHONHASHSEED); the shard must not."""
    names = [f"model-{i}" for i in range(50)]
    here = [shard_of(name, 7) for name in names]
    code = (
        f"from mlwatchdog.daemon.shards import shard_of; print([shard_of(n, 7) for n in {names!r}])"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert out.stdout.strip() == str(here)


def test_targets_spread_over_the_shards() -> None:
    names = [f"team-{i % 13}-model-{i}" for i in range(3000)]
    counts = Counter(shard_of(name, 3) for name in names)
    assert set(counts) == {0, 1, 2}
    assert all(900 <= n <= 1100 for n in counts.values()), counts  # 1000 each, +- ~3.5 sd


def test_the_assignment_holds_every_target_once() -> None:
    names = ["credit-model", "fraud-model", "churn", "ltv", "search-ranker"]
    owned = assignment(names, 4)
    assert sorted(owned) == [0, 1, 2, 3]
    assert sorted(n for targets in owned.values() for n in targets) == sorted(names)
    for shard, targets in owned.items():
        assert all(shard_of(n, 4) == shard for n in targets)
    assert assignment(names, 1) == {0: names}


def test_one_shard_keeps_the_one_lease_of_before() -> None:
    assert lease_names("mlwatchdog", 1) == ["mlwatchdog"]
    assert lease_names("mlwatchdog", 3) == ["mlwatchdog-0", "mlwatchdog-1", "mlwatchdog-2"]
    assert lease_name("ml", 2, 3) == "ml-2"


def test_a_replica_leading_more_shards_waits_longer_for_a_free_one() -> None:
    assert takeover_delay(0, 15.0) == 0.0  # leading none: at once
    assert takeover_delay(1, 15.0) < takeover_delay(2, 15.0)
