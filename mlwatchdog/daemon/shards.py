"""Targets sharded across replicas, pure: which shard a target belongs to, the Lease that leads
each shard, and how long a replica lets a free shard lie before it takes it.

A target's shard is the 32-bit FNV-1a hash of its name modulo the number of shards, as Argo CD
assigns clusters to application-controller shards (controller/sharding/sharding.go,
LegacyDistributionFunction): stable across processes, restarts and Python versions (Python's
`hash()` of a str is salted per process). Each shard is led through its own Lease (the
elector in leader.py takes and renews them); shards: 1 keeps the one Lease named as before.
"""

from __future__ import annotations

from collections.abc import Iterable

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash (Go's hash/fnv New32a)."""
    value = FNV32_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV32_PRIME) & 0xFFFFFFFF
    return value


def shard_of(target: str, shards: int) -> int:
    """The shard (0 .. shards-1) that evaluates and acts for `target`."""
    return fnv1a_32(target.encode()) % shards


def lease_name(lease: str, shard: int, shards: int) -> str:
    """The Lease that leads `shard`: `lease` itself when there is one shard, else `lease-<i>`."""
    return lease if shards == 1 else f"{lease}-{shard}"


def lease_names(lease: str, shards: int) -> list[str]:
    return [lease_name(lease, shard, shards) for shard in range(shards)]


def assignment(targets: Iterable[str], shards: int) -> dict[int, list[str]]:
    """Every shard with its targets (an empty list for a shard without one)."""
    owned: dict[int, list[str]] = {shard: [] for shard in range(shards)}
    for target in targets:
        owned[shard_of(target, shards)].append(target)
    return owned


def takeover_delay(held: int, lease_duration: float) -> float:
    """Seconds a replica leading `held` shards waits, once a shard is free, before it competes
    for it: at once while it leads none, one more lease_duration for each shard it leads. Replicas
    that start together thus take one shard each, and a dead replica's shards go first to the
    survivors that lead the fewest, without any replica knowing how many others there are."""
    return held * lease_duration
