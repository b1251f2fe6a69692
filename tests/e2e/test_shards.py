"""Three `mlwatchdog run` processes split six targets over three shards (daemon.leader_election.
shards), each shard led through its own Lease on the (emulated) Kubernetes API, as Argo CD splits
clusters over its application controllers (argoproj/argo-cd, controller/sharding/sharding.go:
LegacyDistributionFunction puts a cluster on shard fnv32a(id) % replicas, and a controller takes
over a shard whose heartbeat is older than HeartbeatTimeout).

Every target is evaluated by exactly one process. The leader of the Rollout's shard is killed
(-9) right after it reverted the Rollout while the drift goes on: a survivor takes the shard over
once its Lease expires, evaluates its targets, and continues the killed leader's incident from the
Rollout's LAST_ACTION annotation: it verifies the revert (the drift goes on: not recovered, so it
escalates) and never decides a second rollback. Then the other survivor is frozen (SIGSTOP) until
its shard has gone to the heir: woken, it evaluates none of those targets again. No target's
evaluations by two processes overlap in time (from the processes' logs).
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from itertools import count, groupby, pairwise
from pathlib import Path
from typing import Any

import pytest

from mlwatchdog.daemon.shards import shard_of
from tests.e2e.daemon_process import (
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

pytestmark = pytest.mark.timeout(180)

SHARDS = 3
REPLICAS = ("replica-0", "replica-1", "replica-2")
# Shorter than replica_config's: a takeover waits for a Lease to expire, then one more
# lease_duration (takeover_delay: each survivor leads a shard already).
ELECTION = {"lease_duration": "3s", "renew_deadline": "2s", "retry_period": "1s"}
# The heir takes the killed leader's shard over well within this many seconds of the revert
# (about 11 s on a loaded 2-CPU machine), so it adopts the incident while it is still verified.
VERIFY = 30.0


def copies_filling_shards() -> list[str]:
    """Names of alert-only targets that, with TARGET, put two targets on each shard."""
    on_shard = Counter([shard_of(TARGET, SHARDS)])
    names: list[str] = []
    for i in count():
        name, shard = f"model-{i}", shard_of(f"model-{i}", SHARDS)
        if on_shard[shard] < 2:
            on_shard[shard] += 1
            names.append(name)
        if len(names) == 2 * SHARDS - 1:
            return names
    raise AssertionError("unreachable")


def evaluation_times(daemon: DaemonProcess) -> dict[str, list[datetime]]:
    """When the process evaluated each target (its log's `evaluated` events)."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for line in daemon.events("evaluated"):
        times[line["target"]].append(datetime.fromisoformat(line["at"]))
    return times


def test_three_replicas_split_the_targets_and_a_killed_leaders_shard_is_taken_over_once(
    tmp_path: Path, canary_api: FakeKubeAPI, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    api = canary_api
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace="models")
    env = environment(KUBECONFIG=str(kubeconfig))
    copies = copies_filling_shards()
    targets = {TARGET, *copies}
    replicas: dict[str, DaemonProcess] = {}
    for name in REPLICAS:
        config, port = replica_config(
            tmp_path, name, kubeconfig, copies=copies, shards=SHARDS, verify=VERIFY, **ELECTION
        )
        replicas[name] = DaemonProcess(config, port, tmp_path / f"{name}.log", env=env)
        processes.append(replicas[name])

    def owners(alive: list[str], since: datetime) -> dict[str, str] | None:
        """target -> the one replica that says it evaluates it (GET /api/v1/status), once every
        target has one and that replica's log shows an evaluation of it after `since`."""
        found: dict[str, list[str]] = defaultdict(list)
        for name in alive:
            response = replicas[name].get("/api/v1/status")
            if response is None or response.status_code != 200:
                return None
            for target, where in response.json()["targets"].items():
                if where["evaluated_here"]:
                    found[target].append(name)
        if set(found) != targets or any(len(names) != 1 for names in found.values()):
            return None
        owner = {target: names[0] for target, names in found.items()}
        for target, name in owner.items():
            if not any(at > since for at in evaluation_times(replicas[name]).get(target, [])):
                return None
        return owner

    started, began = datetime.now(UTC), time.monotonic()
    for daemon in replicas.values():
        wait_for(daemon, "readiness", lambda d=daemon: is_ready(d), timeout=60)
    first = wait_for(
        replicas[REPLICAS[0]],
        "one evaluator per target",
        lambda: owners(list(REPLICAS), started),
        30,
    )
    print(f"{time.monotonic() - began:.1f}s, placement before the kill:", first)

    # The Rollout's target drifts; its shard's leader reverts it, and is killed at once after.
    feeder.drift.set()
    victim_name = first[TARGET]
    victim = replicas[victim_name]
    wait_for(victim, "the rollback sent", lambda: actions(victim, "sent"), timeout=60)
    assert rollout_writes(api) == [f"{ROLLOUT}/status", ROLLOUT]  # abort, undo
    victim.kill()
    print(f"{time.monotonic() - began:.1f}s, {victim_name} killed after its rollback")
    killed = datetime.now(UTC)
    killed_at = time.monotonic()
    survivors = [n for n in REPLICAS if n != victim_name]

    after = wait_for(
        replicas[survivors[0]],
        "the takeover of the killed replica's shards",
        lambda: owners(survivors, killed),
        timeout=30,
    )
    print(f"placement {time.monotonic() - killed_at:.1f}s after the kill:", after)
    assert all(after[t] == first[t] for t in targets if first[t] != victim_name)
    heir = replicas[after[TARGET]]
    lease = api.get(
        "coordination.k8s.io/v1", "leases", "models", f"mlwatchdog-{shard_of(TARGET, SHARDS)}"
    )
    assert lease is not None and lease["spec"]["holderIdentity"] == after[TARGET]
    # Not before the killed replica's Lease expired (lease_duration after its last renewal).
    assert min(evaluation_times(heir)[TARGET]) > killed

    # Exactly one survivor leads each shard.
    for shard in range(SHARDS):
        leaders = [
            n
            for n in survivors
            if value(replicas[n].metrics(), "mlwatchdog_shard_leader", shard=str(shard)) == 1
        ]
        assert len(leaders) == 1, (shard, leaders)

    # The other survivor freezes (SIGSTOP: a long pause, a frozen node) while the heir decides;
    # its shard goes to the heir. Woken, it finds its Lease lost: it evaluates none of those
    # targets again and stops exporting their state.
    (frozen_name,) = [n for n in survivors if n != after[TARGET]]
    frozen = replicas[frozen_name]
    frozen.proc.send_signal(signal.SIGSTOP)
    froze = datetime.now(UTC)
    # The heir continues the killed leader's incident from the Rollout's annotation: it verifies
    # the revert instead of deciding another; the drift goes on, so it escalates.
    (decided,) = [d for d in victim.events("decision: rollback") if d["target"] == TARGET]
    incident = decided["incident"]
    (adoption,) = heir.events("incident adopted from the workload's last-action annotation")
    assert (adoption["target"], adoption["incident"]) == (TARGET, incident)
    assert (adoption["by"], adoption["phase"]) == (victim_name, "verifying")
    verified = heir.get(f"/api/v1/targets/{TARGET}")
    assert verified is not None and verified.status_code == 200
    assert (verified.json()["phase"], verified.json()["incident"]) == ("verifying", incident)

    def escalated() -> list[dict[str, Any]]:
        decisions = heir.events("decision: escalate")
        return [d for d in decisions if (d["target"], d["incident"]) == (TARGET, incident)]

    (escalation,) = wait_for(heir, "the heir's verdict on the revert", escalated, timeout=60)
    assert "not recovered after the rollback" in escalation["reasons"]
    print(f"{time.monotonic() - began:.1f}s, the heir verified the revert and escalated")
    assert rollout_writes(api) == [f"{ROLLOUT}/status", ROLLOUT]  # still the one revert
    rollbacks = [d for name in REPLICAS for d in replicas[name].events("decision: rollback")]
    assert rollbacks == [decided], rollbacks  # decided once, by the killed leader
    results = {n: audit_results(tmp_path / n / "audit.jsonl") for n in REPLICAS}
    assert results == {n: ["sent"] if n == victim_name else [] for n in REPLICAS}, results

    last = wait_for(
        heir, "the frozen replica's shard taken over", lambda: owners([after[TARGET]], froze), 40
    )
    frozen.proc.send_signal(signal.SIGCONT)
    lost = "shard targets no longer evaluated here"
    wait_for(frozen, "the frozen replica's loss noticed", lambda: frozen.events(lost), 20)
    print(f"{time.monotonic() - began:.1f}s, {frozen_name} froze, woke and found its shard lost")
    assert set(last.values()) == {after[TARGET]}

    # No target's evaluations by two replicas overlap in time; each moved at most twice.
    spans: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for name, daemon in replicas.items():
        for target, times in evaluation_times(daemon).items():
            spans[target].append((min(times), max(times), name))
    for target in targets:
        ordered = sorted(spans[target])
        for (_, end, one), (start, _, other) in pairwise(ordered):
            assert end < start, f"{target}: {one} evaluated it until {end}, {other} from {start}"
        in_turn = [name for name, _ in groupby((first[target], after[target], last[target]))]
        assert [span[2] for span in ordered] == in_turn, ordered

    # A replica exports the state of the targets it evaluates only: none for the one woken
    # (once an evaluation it was in when frozen has finished).
    def exported(name: str) -> set[str]:
        return {
            dict(labels)["target"]
            for metric, labels in replicas[name].metrics()
            if metric == "mlwatchdog_target_state"
        }

    wait_for(
        frozen, "no state exported by the woken replica", lambda: not exported(frozen_name), 10
    )
    assert exported(after[TARGET]) == targets
    api.assert_all_valid()
