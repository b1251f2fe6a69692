"""Leader election over a coordination.k8s.io Lease, with the kubernetes client's LeaseLock:
among replicas only the leader patches; the others evaluate and serve metrics.

`is_leader()` is true only while the Lease was renewed less than renew_deadline ago, so a leader
cut off from the API stops acting before another replica can take the Lease over.
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
from mlwatchdog.rules.schema import LeaderElection


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    """Runs the election in a background thread; `is_leader` answers at once."""

    def __init__(
        self,
        api_client: client.ApiClient,
        settings: LeaderElection,
        identity: str,
        log: Any,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.namespace = settings.namespace or in_cluster_namespace() or "default"
        self.log = log.bind(lease=f"{self.namespace}/{settings.lease}", identity=identity)
        self.on_change = on_change
        self.coordination = client.CoordinationV1Api(api_client)
        self._leading = threading.Event()
        self._election: leaderelection.LeaderElection | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_leader(self) -> bool:
        election = self._election
        if not self._leading.is_set() or election is None:
            return False
        renewed_ms = election.observed_time_milliseconds
        return time.time() * 1000 - renewed_ms < self.settings.renew_deadline.total_seconds() * 1000

    def stop(self) -> None:
        """Stop competing and, when leading, release the Lease so another replica takes over
        without waiting for it to expire."""
        self._stopped.set()
        if self._leading.is_set():
            self._leading.clear()
            try:
                lease = self.coordination.read_namespaced_lease(self.settings.lease, self.namespace)
                if lease.spec and lease.spec.holder_identity == self.identity:
                    lease.spec.holder_identity = None
                    lease.spec.renew_time = datetime.now(UTC)
                    self.coordination.replace_namespaced_lease(
                        self.settings.lease, self.namespace, lease
                    )
                    self.log.info("released the leader lease")
            except Exception as exc:  # the Lease expires by itself anyway
                self.log.warning("could not release the leader lease", error=str(exc))

    def _run(self) -> None:
        while not self._stopped.is_set():
            lock = LeaseLock(self.settings.lease, self.namespace, self.identity)
            lock.api_instance = self.coordination  # LeaseLock builds one on the global config
            config = electionconfig.Config(
                lock,
                lease_duration=int(self.settings.lease_duration.total_seconds()),
                renew_deadline=int(self.settings.renew_deadline.total_seconds()),
                retry_period=max(1, int(self.settings.retry_period.total_seconds())),
                onstarted_leading=self._started,
                onstopped_leading=self._stopped_leading,
            )
            self._election = leaderelection.LeaderElection(config)
            try:
                self._election.run()  # returns when leadership is lost
            except Exception as exc:  # the API down must not end the election for good
                self.log.warning("leader election error", error=str(exc))
            self._leading.clear()
            self._stopped.wait(self.settings.retry_period.total_seconds())

    def _started(self) -> None:
        self._leading.set()
        self.log.warning("became the leader: this replica acts")
        self.on_change(True)

    def _stopped_leading(self) -> None:
        if self._leading.is_set():
            self._leading.clear()
        self.log.warning("no longer the leader: this replica only evaluates")
        self.on_change(False)
