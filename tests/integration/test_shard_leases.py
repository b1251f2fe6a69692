"""The daemon's LeaderElector over three shards' Leases on the emulated Kubernetes API (real
`kubernetes` client, real HTTP): three replicas started together take one shard each; when one
stops, its shard goes to exactly one of the others; no shard is ever led by two at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import structlog

from mlwatchdog.daemon.leader import LeaderElector
from mlwatchdog.rules.schema import LeaderElection
from tests.kube.apiserver import FakeKubeAPI

pytestmark = pytest.mark.timeout(60)

SHARDS = 3
SETTINGS = LeaderElection(
    enabled=True,
    lease="mlwatchdog",
    namespace="default",
    shards=SHARDS,
    lease_duration=timedelta(seconds=3),
    renew_deadline=timedelta(seconds=2),
    retry_period=timedelta(seconds=1),
)


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        yield fake
    assert not fake.internal_errors, fake.internal_errors


def leaders(electors: list[LeaderElector]) -> dict[int, list[str]]:
    """Each shard with the electors that say they lead it, at one instant."""
    return {shard: [e.identity for e in electors if e.is_leader(shard)] for shard in range(SHARDS)}


def watch_until(
    electors: list[LeaderElector], done: Callable[[dict[int, list[str]]], bool], timeout: float
) -> dict[int, list[str]]:
    """Sample who leads what until `done`; no shard may ever have two leaders."""
    deadline = time.monotonic() + timeout
    while True:
        now = leaders(electors)
        assert all(len(names) <= 1 for names in now.values()), now
        if done(now):
            return now
        assert time.monotonic() < deadline, f"not settled in {timeout:g}s: {now}"
        time.sleep(0.02)


def test_replicas_share_the_shards_and_take_a_stopped_ones_over(api: FakeKubeAPI) -> None:
    changes: list[tuple[str, int, bool]] = []
    electors = [
        LeaderElector(
            api.api_client(),
            SETTINGS,
            f"mlwatchdog-{i}",
            structlog.get_logger(),
            on_change=lambda shard, leading, i=i: changes.append(
                (f"mlwatchdog-{i}", shard, leading)
            ),
        )
        for i in range(3)
    ]
    for elector in electors:
        elector.start()
    try:
        every_shard_led = watch_until(
            electors, lambda now: all(len(n) == 1 for n in now.values()), timeout=15
        )
        # One each: a replica that leads a shard lets a free one lie (takeover_delay).
        assert sorted(n[0] for n in every_shard_led.values()) == [e.identity for e in electors]
        for shard, (name,) in every_shard_led.items():
            lease = api.get("coordination.k8s.io/v1", "leases", "default", f"mlwatchdog-{shard}")
            assert lease is not None and lease["spec"]["holderIdentity"] == name
        assert sorted(changes) == sorted((n[0], s, True) for s, n in every_shard_led.items())

        stopped = electors.pop(0)
        (mine,) = stopped.leading()
        stopped.stop()  # releases its Lease (as on SIGTERM)
        assert not stopped.is_leader(mine)
        after = watch_until(electors, lambda now: all(len(n) == 1 for n in now.values()), 15)
        assert after[mine][0] != stopped.identity
        assert all(after[s] == every_shard_led[s] for s in range(SHARDS) if s != mine)
        heir = next(e for e in electors if e.identity == after[mine][0])
        (own,) = [s for s in range(SHARDS) if every_shard_led[s] == [heir.identity]]
        assert sorted(heir.leading()) == sorted([own, mine])
    finally:
        for elector in electors:
            elector.stop()
