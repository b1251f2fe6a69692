"""A 10% Argo canary whose predictions shift, end to end through the daemon's TargetRunner:
samples in files carrying each row's `rollouts-pod-template-hash`, the canary and stable hashes
read from the Rollout (FakeKubeAPI, real HTTP, CRD-validated, with the emulated Argo
controller), the canary judged on its own rows, and only the abort sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import structlog

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.core import DecisionKind, Phase
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.runner import TargetRunner
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.replay.bundle import BundleWriter, list_bundles, load_bundle
from mlwatchdog.rules.schema import Bundles, Revisions
from mlwatchdog.sources.observe import Observer
from tests.integration.test_kube_actions import ROLLOUT, actuator, rollout
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.kserve_controller import kserve_canary
from tests.kube.objects import argo_canary, install_argo_controller
from tests.kube.targets import kube_target
from tests.unit.test_canary_revisions import NOW, config, reference_rows, window_rows


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        yield fake
    fake.assert_all_valid()
    assert not fake.reactor_errors, fake.reactor_errors
    assert not fake.internal_errors, fake.internal_errors


def test_a_drifting_canary_is_aborted_and_the_stable_template_kept(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    seed = argo_canary(step=1, steps=4)
    api.seed(seed.objects)
    install_argo_controller(api)
    template_before = rollout(api)["spec"]["template"]

    rng = np.random.default_rng(18)
    reference_rows(rng).to_parquet(tmp_path / "ref.parquet")
    (tmp_path / "live").mkdir()
    rows = window_rows(rng, canary_revision=seed.current_hash, stable_revision=seed.stable_hash)
    rows.to_parquet(tmp_path / "live" / "batch.parquet")
    loaded = config(str(tmp_path / "live"), str(tmp_path / "ref.parquet"))
    target = loaded.targets[0]

    clock = [NOW]
    log = structlog.get_logger()
    runner = TargetRunner(
        target,
        Observer(loaded),
        actuator(api, AuditLog(tmp_path / "audit.jsonl")),
        StateStore(tmp_path / "state", log),
        DaemonMetrics(),
        log,
        lambda: clock[0],
        bundles=BundleWriter(Bundles(), str(tmp_path / "bundles"), log),
    )
    first = runner.run_once()
    assert first is not None and first.decisions == ()  # pending for `for: 10s`
    results = {r.check: r for r in first.results}
    assert not results["score_drift"].breaching  # the mixed window misses it
    assert results["score_drift[canary-vs-stable]"].breaching
    assert seed.current_hash in results["score_drift[canary-vs-stable]"].reason

    clock[0] = NOW + timedelta(seconds=10)
    second = runner.run_once()
    assert second is not None
    (decision,) = second.decisions
    assert decision.kind is DecisionKind.ROLLBACK and decision.scope == "canary"
    assert second.state.phase is Phase.VERIFYING

    # The abort alone: traffic back to the stable ReplicaSet, the template left as it was.
    (abort,) = api.patches()
    assert abort.path == f"{ROLLOUT}/status" and abort.status == 200
    assert abort.body["status"] == {"abort": True}
    after = rollout(api)
    assert after["status"]["abort"] is True
    assert after["spec"]["template"] == template_before

    # Verified: at the end of verify.window the stable revision alone serves, its rows are
    # clean, and the aborted Rollout (Degraded: RolloutAborted, as Argo says) counts as
    # recovered: the incident closes instead of escalating.
    assert second.state.verify_until is not None
    clock[0] = second.state.verify_until
    stable_only = window_rows(rng, stable_revision=seed.stable_hash, now=clock[0], share=0.0)
    stable_only.to_parquet(tmp_path / "live" / "after.parquet")
    verified = runner.run_once()
    assert verified is not None and verified.decisions == ()
    assert verified.state.phase is Phase.HEALTHY, verified.state
    assert not any(r.check.endswith("]") for r in verified.results)  # no canary any more

    # The incident bundle replays offline to the same canary-only decision.
    replayed = [load_bundle(p).replay() for p in list_bundles(str(tmp_path / "bundles"))]
    rolled_back = [r for r in replayed if r.rolls_back]
    assert len(rolled_back) == 1 and rolled_back[0].same_as_recorded
    assert rolled_back[0].decisions[0].scope == "canary"


def test_the_drivers_say_which_revisions_serve(api: FakeKubeAPI, tmp_path: Path) -> None:
    """What the runner splits the window by: Argo's canary and stable pod-template-hashes,
    KServe's latest created and latest rolled-out revisions; none once the canary is over."""
    kube = actuator(api, AuditLog(tmp_path / "audit.jsonl"))
    seed = argo_canary(step=1, steps=4)
    isvc = kserve_canary(percent=10)
    api.seed([*seed.objects, *isvc.objects])
    assert kube.serving(kube_target()) == Revisions(
        canary=seed.current_hash, stable=seed.stable_hash
    )
    predictor = isvc.isvc["status"]["components"]["predictor"]
    assert kube.serving(kube_target("kserve")) == Revisions(
        canary=predictor["latestCreatedRevision"], stable=predictor["latestRolledoutRevision"]
    )
    assert kube.serving(kube_target("deployment")) is None

    aborted = argo_canary(name="fraud-aborted", step=1, steps=4, aborted=True)
    api.seed(aborted.objects)
    target = kube_target()
    workload = target.workload.model_copy(update={"name": "fraud-aborted"})
    aborted_target = target.model_copy(update={"workload": workload})
    assert kube.serving(aborted_target) is None  # aborted: the stable alone serves
