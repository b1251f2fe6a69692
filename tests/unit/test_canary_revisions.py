"""Per-revision windows: a 10% canary whose predictions shift while the stable ones do not.

The mixed window (90% stable rows) dilutes the shift below the test's power; the canary's own
rows, against the reference and against the stable rows of the same window, show it. A breach of
the canary's checks aborts the canary only (decision scope "canary", Argo: the abort alone).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from mlwatchdog.actions.workloads.argo import plan_argo
from mlwatchdog.core import (
    DataStatus,
    Decision,
    DecisionKind,
    Observation,
    evaluate,
)
from mlwatchdog.detectors import Reference
from mlwatchdog.errors import ConfigError
from mlwatchdog.report.page import ReportPage, render_report
from mlwatchdog.rules import Config, KServeSource, Sink, Target, parse_config
from mlwatchdog.rules.schema import Revisions
from mlwatchdog.sources.kserve import Event, KServeReader, SinkStore
from mlwatchdog.sources.kserve.lines import stamp
from mlwatchdog.sources.observe import Observer, by_revision
from tests.kube.objects import argo_canary
from tests.kube.targets import kube_target

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STABLE, CANARY = "6d4f8b9c7", "7f5c9d8e4"
SHIFT = 0.6  # the canary's predictions, in the reference's standard deviations


def config(live_url: str, ref_url: str, revisions: dict[str, str] | None = None) -> Config:
    samples: dict[str, Any] = {"source": "live", "window": "15m", "min_samples": 100}
    if revisions:
        samples["revisions"] = revisions
    target = {
        "name": "fraud",
        "workload": {"kind": "argo-rollout", "name": "fraud-model", "namespace": "models"},
        "samples": samples,
        "reference": {"source": "ref"},
        "columns": {"features": {"amount": "numeric"}, "predictions": {"score": "numeric"}},
        "checks": [
            {
                "name": "score_drift",
                "type": "drift",
                "test": "ks",
                "columns": "predictions",
                "threshold": 0.01,
                "drift_share": 1.0,
            },
        ],
        "for": "10s",
        "rollback": {"dry_run": False},
    }
    sources = {
        "live": {"type": "files", "url": live_url, "revision_column": "revision"},
        "ref": {"type": "files", "url": ref_url, "timestamp_column": None},
    }
    text = yaml.safe_dump({"version": 1, "sources": sources, "targets": [target]})
    return parse_config(text, "rules.yaml")


def reference_rows(rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({"amount": rng.normal(size=5000), "score": rng.normal(size=5000)})


def window_rows(
    rng: np.random.Generator,
    n: int = 2000,
    canary_revision: str = CANARY,
    stable_revision: str = STABLE,
    now: datetime = NOW,
    share: float = 0.10,
) -> pd.DataFrame:
    """`n` rows of the 15 minutes before `now`, `share` of them served by the canary, whose
    scores are shifted."""
    canary = rng.random(n) < share
    return pd.DataFrame(
        {
            "timestamp": now - pd.to_timedelta(rng.uniform(1, 800, n), unit="s"),
            "revision": np.where(canary, canary_revision, stable_revision),
            "amount": rng.normal(size=n),
            "score": rng.normal(size=n) + SHIFT * canary,
        }
    )


def observation(target: Target, rows: pd.DataFrame, reference: pd.DataFrame) -> Observation:
    kinds = target.columns.all
    built = Reference(reference, columns=list(kinds), kinds=list(kinds.values()))
    revisions = target.samples.revisions
    return Observation(
        target=target.name,
        at=NOW,
        samples=rows,
        samples_status=DataStatus.OK,
        reference=built,
        reference_status=DataStatus.OK,
        revisions=by_revision(rows, "revision", revisions),
    )


def test_the_canary_is_caught_on_its_own_rows_and_missed_in_the_mixed_window() -> None:
    rng = np.random.default_rng(14)
    reference, rows = reference_rows(rng), window_rows(rng)
    target = config("/x", "/y", {"canary": CANARY, "stable": STABLE}).targets[0]
    results = {
        r.check: r
        for r in evaluate(target, observation(target, rows, reference), None, NOW).results
    }

    mixed = results["score_drift"]
    assert mixed.status is DataStatus.OK and not mixed.breaching
    vs_reference = results["score_drift[canary]"]
    assert vs_reference.status is DataStatus.OK and vs_reference.breaching
    vs_stable = results["score_drift[canary-vs-stable]"]
    assert vs_stable.status is DataStatus.OK and vs_stable.breaching
    assert CANARY in vs_stable.reason and STABLE in vs_stable.reason

    # The figures are scipy's two-sample KS on exactly the rows of each revision.
    canary = rows.loc[rows.revision == CANARY, "score"]
    stable = rows.loc[rows.revision == STABLE, "score"]
    expected = {
        "score_drift": stats.ks_2samp(rows.score, reference.score),
        "score_drift[canary]": stats.ks_2samp(canary, reference.score),
        "score_drift[canary-vs-stable]": stats.ks_2samp(canary, stable),
    }
    for name, scipy_result in expected.items():
        (column,) = results[name].columns
        assert column.statistic == pytest.approx(scipy_result.statistic)
        assert column.pvalue == pytest.approx(scipy_result.pvalue, rel=1e-6, abs=1e-12)


def test_a_canary_breach_decides_an_abort_of_the_canary_only() -> None:
    rng = np.random.default_rng(15)
    target = config("/x", "/y", {"canary": CANARY, "stable": STABLE}).targets[0]
    seen = observation(target, window_rows(rng), reference_rows(rng))
    first = evaluate(target, seen, None, NOW)
    assert first.decisions == ()  # pending for `for: 10s`
    second = evaluate(target, seen, first.state, NOW + timedelta(seconds=10))
    (decision,) = second.decisions
    assert decision.kind is DecisionKind.ROLLBACK and decision.scope == "canary"
    assert any(r.startswith("score_drift[canary") for r in decision.reasons)

    # The report shows the canary's checks beside the whole window's.
    page = render_report(ReportPage(target, NOW, second, seen))
    for name in ("score_drift", "score_drift[canary]", "score_drift[canary-vs-stable]"):
        assert f"<td>{name}</td>" in page


def test_a_small_canary_is_insufficient_never_a_rollback() -> None:
    rng = np.random.default_rng(16)
    rows = window_rows(rng, n=600)  # ~60 canary rows, min_samples 100
    target = config("/x", "/y", {"canary": CANARY, "stable": STABLE}).targets[0]
    seen = observation(target, rows, reference_rows(rng))
    state = None
    for i in range(3):
        evaluation = evaluate(target, seen, state, NOW + timedelta(seconds=10 * i))
        state = evaluation.state
        assert evaluation.decisions == ()
    results = {r.check: r for r in evaluation.results}
    for name in ("score_drift[canary]", "score_drift[canary-vs-stable]"):
        assert results[name].status is DataStatus.INSUFFICIENT
        assert "need 100" in results[name].reason


def test_a_files_source_with_revision_column_splits_the_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(17)
    reference_rows(rng).to_parquet(tmp_path / "ref.parquet")
    (tmp_path / "live").mkdir()
    window_rows(rng).to_parquet(tmp_path / "live" / "batch.parquet")
    loaded = config(str(tmp_path / "live"), str(tmp_path / "ref.parquet"))
    target = loaded.targets[0]
    observer = Observer(loaded)

    # No canary in progress: the window is judged whole, as before.
    assert observer.observe(target, NOW).revisions is None
    # The workload serves a canary (as the Argo driver reads it): the rows split by revision.
    serving = config("/x", "/y", {"canary": CANARY, "stable": STABLE}).targets[0].samples.revisions
    seen = observer.observe(target, NOW, lambda: serving)
    assert seen.revisions is not None
    assert set(seen.revisions.canary_samples.revision) == {CANARY}
    assert len(seen.revisions.canary_samples) + len(seen.revisions.stable_samples) == len(
        seen.samples
    )
    first = evaluate(target, seen, None, NOW)
    second = evaluate(target, seen, first.state, NOW + timedelta(seconds=10))
    (decision,) = second.decisions
    assert decision.scope == "canary"
    assert not {r.check: r for r in second.results}["score_drift"].breaching


def test_argo_aborts_the_canary_only_without_undoing_the_template() -> None:
    seed = argo_canary()
    target = kube_target()
    canary = Decision(
        DecisionKind.ROLLBACK, "fraud", "i-1", NOW, ("c",), to="prior", scope="canary"
    )
    plan = plan_argo(seed.rollout, seed.replicasets, None, target, canary, "t", NOW)
    (request,) = plan.requests
    assert request.path.endswith("/status") and request.body == {"status": {"abort": True}}
    # The whole window breaching (no scope) still aborts and undoes the template.
    whole = Decision(DecisionKind.ROLLBACK, "fraud", "i-1", NOW, ("w",), to="prior")
    full = plan_argo(seed.rollout, seed.replicasets, None, target, whole, "t", NOW)
    assert len(full.requests) == 2

    aborted = argo_canary(aborted=True)
    nothing = plan_argo(aborted.rollout, aborted.replicasets, None, target, canary, "t", NOW)
    assert nothing.requests == () and "no canary to abort" in nothing.done


def test_the_kserve_sink_splits_by_the_loggers_endpoint(tmp_path: Path) -> None:
    sink = Sink(path=str(tmp_path / "sink"), pair_timeout=timedelta(minutes=1))
    store = SinkStore(sink)
    meta = {"inference_service": "credit", "namespace": "models", "component": "predictor"}
    events = []
    for i in range(20):
        endpoint = "canary" if i % 10 == 0 else "default"  # the predictor pod's label
        at = stamp(NOW - timedelta(seconds=30 + i))
        events += [
            Event(at, "request", f"e{i}", **meta, endpoint=endpoint, rows=[[i, i / 2]]),
            Event(at, "response", f"e{i}", **meta, endpoint=endpoint, rows=[[i / 100]]),
        ]
    try:
        store.write(events).result()
    finally:
        store.close()
    spec = KServeSource(type="kserve", inference_service="credit", revision_column="endpoint")
    read = KServeReader("live", spec, sink, clock=lambda: NOW).read(
        ["amount", "income", "score"], NOW - timedelta(minutes=5), NOW
    )
    assert read.status is DataStatus.OK, read.reason
    windows = by_revision(read.frame, "endpoint", Revisions(canary="canary", stable="default"))
    assert windows is not None
    assert sorted(windows.canary_samples.amount) == [0, 10]
    assert len(windows.stable_samples) == 18


def test_stated_revisions_need_a_revision_column_says_check() -> None:
    text = yaml.safe_dump({
        "version": 1,
        "sources": {"live": {"type": "files", "url": "/x"}, "ref": {"type": "files", "url": "/y"}},
        "targets": [{
            "name": "fraud",
            "samples": {"source": "live", "revisions": {"canary": "b", "stable": "a"}},
            "reference": {"source": "ref"},
            "columns": {"features": {"amount": "numeric"}},
            "checks": [{"name": "drift", "type": "drift", "test": "ks"}],
        }],
    }, sort_keys=False)  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "rules.yaml")
    assert "rules.yaml:" in str(raised.value)
    assert "targets[0].samples.revisions: source 'live' has no revision_column" in str(raised.value)
