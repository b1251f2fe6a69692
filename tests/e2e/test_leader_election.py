"""Two `mlwatchdog run` processes on one config share a Lease on the (emulated) Kubernetes API:
both evaluate and decide, exactly one patches the Rollout. When the leader stops, the other takes
the Lease over and does not revert the Rollout a second time (the LAST_ACTION annotation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.daemon_process import (
    INTERVAL,
    ROLLOUT,
    TARGET,
    DaemonProcess,
    Feeder,
    actions,
    audit_results,
    environment,
    is_ready,
    replica_config,
    rollout_writes,
    value,
    wait_for,
)
from tests.kube.apiserver import FakeKubeAPI

pytestmark = pytest.mark.timeout(240)


def test_two_replicas_one_patch_and_a_takeover_does_not_repeat_it(
    tmp_path: Path, canary_api: FakeKubeAPI, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    api = canary_api
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace="models")
    env = environment(KUBECONFIG=str(kubeconfig))
    replicas = {}
    for name in ("replica-a", "replica-b"):
        config, port = replica_config(tmp_path, name, kubeconfig)
        daemon = DaemonProcess(config, port, tmp_path / f"{name}.log", env=env)
        processes.append(daemon)
        replicas[name] = daemon

    def leaders() -> list[str]:
        return [n for n, d in replicas.items() if d.events("became the leader: this replica acts")]

    for daemon in replicas.values():
        wait_for(daemon, "readiness", lambda d=daemon: is_ready(d), timeout=60)
    first = wait_for(replicas["replica-a"], "a leader", leaders, timeout=30)
    assert len(first) == 1, first
    leader, follower = replicas[first[0]], replicas[next(n for n in replicas if n != first[0])]
    lease = api.get("coordination.k8s.io/v1", "leases", "models", "mlwatchdog")
    assert lease is not None and lease["spec"]["holderIdentity"] == first[0]
    assert value(leader.metrics(), "mlwatchdog_leader") == 1
    assert value(follower.metrics(), "mlwatchdog_leader") == 0

    feeder.drift.set()
    wait_for(leader, "the rollback sent", lambda: actions(leader, "sent"), timeout=90)
    wait_for(follower, "the follower's decision", lambda: actions(follower, "standby"), 60)
    for _ in range(3):  # more evaluations on both: nothing more is sent
        count = value(follower.metrics(), "mlwatchdog_evaluations_total", target=TARGET) or 0
        wait_for(
            follower,
            "another evaluation",
            lambda c=count: (value(follower.metrics(), "mlwatchdog_evaluations_total") or 0) > c,
            timeout=INTERVAL * 5,
        )
    assert rollout_writes(api) == [
        f"{ROLLOUT}/status",
        ROLLOUT,
    ]  # one abort, one undo: from one replica
    rollout = api.get("argoproj.io/v1alpha1", "rollouts", "models", TARGET)
    assert rollout is not None
    assert rollout["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.4.0")
    assert audit_results(tmp_path / first[0] / "audit.jsonl") == ["sent"]
    assert audit_results(tmp_path / follower.output.stem / "audit.jsonl") == []
    assert actions(leader, "standby") == 0 and actions(follower, "sent") == 0

    # The leader stops (releasing the Lease); the follower takes over and does not act again.
    code, _ = leader.stop()
    assert code == 0
    wait_for(
        follower,
        "the takeover",
        lambda: follower.events("became the leader: this replica acts"),
        timeout=20,
    )
    lease = api.get("coordination.k8s.io/v1", "leases", "models", "mlwatchdog")
    assert lease is not None and lease["spec"]["holderIdentity"] == follower.output.stem
    evaluated = len(follower.events("evaluated"))
    wait_for(
        follower,
        "evaluations as the leader",
        lambda: len(follower.events("evaluated")) >= evaluated + 3,
        timeout=INTERVAL * 8,
    )
    assert rollout_writes(api) == [f"{ROLLOUT}/status", ROLLOUT]
    api.assert_all_valid()
