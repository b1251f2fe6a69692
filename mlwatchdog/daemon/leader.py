"""Leader election over coordination.k8s.io Leases, with the kubernetes client's LeaseLock: among
replicas only the leader of a target's shard evaluates it (shards > 1) and patches its workload.

One Lease per shard (daemon/shards.py names them; shards: 1 is the single Lease of before, and
every replica then evaluates every target while only the leader acts). `is_leader(shard)` is true
only while that Lease was renewed less than renew_deadline ago, so a leader cut off from the API
stops acting before another replica can take the Lease over (after lease_duration).

Every replica competes for every shard, so the survivors take a dead replica's shards over; a
replica that already leads some lets a free shard lie longer first (`shards.takeover_delay`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from mlwatchdog.actions.kube_api import in_cluster_namespace
from mlwatchdog.daemon.shards import lease_names, shard_of, takeover_delay
from mlwatchdog.rules.schema import LeaderElection


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    """Takes and renews the shards' Leases in one background thread; `is_leader` answers at
    once. `on_change(shard, leading)` is called from that thread when a shard is won or lost."""

    def __init__(
        self,
        api_client: client.ApiClient,
        settings: LeaderElection,
        identity: str,
        log: Any,
        on_change: Callable[[int, bool], None] = lambda shard, leading: None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.shards = settings.shards
        self.namespace = settings.namespace or in_cluster_namespace() or "default"
        self.leases = lease_names(settings.lease, self.shards)
        self.log = log.bind(identity=identity)
        self.on_change = on_change
        self.coordination = client.CoordinationV1Api(api_client)
        self._elections = [self._election(name) for name in self.leases]
        # shard -> time.monotonic() when its Lease renewal that succeeded last was sent
        self._renewed: dict[int, float] = {}
        # shard -> (the Lease as last read, time.monotonic() when it was first read so)
        self._seen: dict[int, tuple[Any, float]] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def _election(self, lease: str) -> leaderelection.LeaderElection:
        lock = LeaseLock(lease, self.namespace, self.identity)
        lock.api_instance = self.coordination  # LeaseLock builds one on the global config
        config = electionconfig.Config(
            lock,
            lease_duration=int(self.settings.lease_duration.total_seconds()),
            renew_deadline=int(self.settings.renew_deadline.total_seconds()),
            retry_period=max(1, int(self.settings.retry_period.total_seconds())),
            onstarted_leading=lambda: None,  # only try_acquire_or_renew is used: see _step
            onstopped_leading=lambda: None,
        )
        return leaderelection.LeaderElection(config)

    def start(self) -> None:
        self._thread.start()

    def is_leader(self, shard: int = 0) -> bool:
        renewed = self._renewed.get(shard)
        deadline = self.settings.renew_deadline.total_seconds()
        return renewed is not None and time.monotonic() - renewed < deadline

    def leads(self, target: str) -> bool:
        """True while this replica leads the shard of `target`."""
        return self.is_leader(shard_of(target, self.shards))

    def leading(self) -> list[int]:
        """The shards this replica leads now."""
        return [shard for shard in range(self.shards) if self.is_leader(shard)]

    def stop(self) -> None:
        """Stop competing and release the Leases held, so other replicas take over without
        waiting for them to expire."""
        self._stopped.set()
        if self._thread.is_alive():  # a renewal under way would take the Lease back
            self._thread.join(self.settings.renew_deadline.total_seconds())
        for shard in list(self._renewed):
            del self._renewed[shard]
            self._release(shard)

    def _release(self, shard: int) -> None:
        name = self.leases[shard]
        try:
            lease = self.coordination.read_namespaced_lease(name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = datetime.now(UTC)
                self.coordination.replace_namespaced_lease(name, self.namespace, lease)
                self.log.info("released the leader lease", lease=self._where(shard))
        except Exception as exc:  # the Lease expires by itself anyway
            self.log.warning(
                "could not release the leader lease", lease=self._where(shard), error=str(exc)
            )

    def _where(self, shard: int) -> str:
        return f"{self.namespace}/{self.leases[shard]}"

    def _run(self) -> None:
        while not self._stopped.is_set():
            for shard in range(self.shards):
                if self._stopped.is_set():
                    return
                try:
                    self._step(shard)
                except Exception as exc:  # the API down, a failing callback: go on electing
                    self.log.warning(
                        "leader election error",
                        lease=self._where(shard),
                        error=f"{type(exc).__name__}: {exc}",
                    )
            self._stopped.wait(self.settings.retry_period.total_seconds())

    def _step(self, shard: int) -> None:
        """Renew the shard's Lease when leading it; else try to take it, when it is our turn."""
        leading = shard in self._renewed
        if not leading and not self._may_compete(shard):
            return
        sent = time.monotonic()
        try:
            won = bool(self._elections[shard].try_acquire_or_renew())
        except Exception as exc:  # the API down must not end the election for good
            self.log.warning("leader election error", lease=self._where(shard), error=str(exc))
            won = False
        if won:
            self._renewed[shard] = sent
            if not leading:
                self._changed(shard, True)
        elif leading and not self.is_leader(shard):
            del self._renewed[shard]
            self._changed(shard, False)

    def _may_compete(self, shard: int) -> bool:
        """Whether to try to take the shard now: at once while leading none; else only once it
        has looked free for `takeover_delay` (it is read to see since when)."""
        held = len(self._renewed)
        if held == 0:
            return True
        lock = self._elections[shard].election_config.lock
        found, record = lock.get(lock.name, lock.namespace)
        if not found and getattr(record, "status", None) != 404:
            return False  # the API fails: nothing to go by
        now = time.monotonic()
        snapshot = dict(record.__dict__) if found else None
        if shard not in self._seen or self._seen[shard][0] != snapshot:
            self._seen[shard] = (snapshot, now)
        since = self._seen[shard][1]
        if found and record.holder_identity:  # held: free once lease_duration passes unrenewed
            since += self.settings.lease_duration.total_seconds()
        delay = takeover_delay(held, self.settings.lease_duration.total_seconds())
        return now >= since + delay

    def _changed(self, shard: int, leading: bool) -> None:
        lease = self._where(shard)
        if leading:
            what = "became the leader: this replica acts"
            if self.shards > 1:
                what = "leads a shard: evaluates and acts for its targets"
            self.log.warning(what, shard=shard, lease=lease)
        else:
            what = "no longer the leader: this replica only evaluates"
            if self.shards > 1:
                what = "lost a shard: its targets are no longer evaluated here"
            self.log.warning(what, shard=shard, lease=lease)
        self.on_change(shard, leading)
