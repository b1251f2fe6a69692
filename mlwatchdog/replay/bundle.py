"""Incident bundles: everything one evaluation decided from, so it can be re-run offline, bit for
bit, and asked "what if".

A bundle is a folder (local, or any fsspec URL) named `<time>-<target>-<event>`:
- `current.parquet`: the window of samples the checks tested;
- `reference.parquet`: the reference rows, when small enough (else only its fingerprint and where
  it came from: the source and window, to re-read and verify);
- `manifest.json`, written last (a folder without one is incomplete and ignored): the config
  (its sources and settings, and this target of its targets),
  the target's state before and after, the check results and metric readings, the decisions,
  each action's outcome with the requests and responses the audit log recorded, the workload's
  health, and the data statuses.

The daemon writes one on every change of the target's phase or of a check's state, and on every
decision (`BundleWriter`); `load_bundle` reads one and `Bundle.replay()` re-runs the same core.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import pandas as pd
import yaml
from fsspec.implementations.local import LocalFileSystem
from pydantic import ValidationError

from mlwatchdog.core import (
    ActionOutcome,
    CheckResult,
    DataStatus,
    Decision,
    Evaluation,
    LabelledRows,
    MetricReading,
    Observation,
    RevisionWindows,
    TargetState,
    WorkloadHealth,
    evaluate,
    from_json,
    record_action,
    to_json,
)
from mlwatchdog.detectors import Reference
from mlwatchdog.errors import MlwatchdogError
from mlwatchdog.rules import Config, ConfigIssue, Target
from mlwatchdog.rules.loader import validation_problems
from mlwatchdog.rules.schema import Bundles, Revisions
from mlwatchdog.rules.secret import Redactor
from mlwatchdog.sources.observe import by_revision, revision_column
from mlwatchdog.sources.tables import read_parquet

FORMAT = "mlwatchdog-bundle"
REFERENCES = ".references"  # under the bundles' folder: one copy per reference, hard-linked
REFERENCE_BYTES_KEPT = 32 << 20  # encoded references kept in memory for the next bundles
VERSION = 1
_NAME = re.compile(r"^(\d{8}T\d{6}\d{6}Z)-")


class BundleError(MlwatchdogError):
    """A bundle that cannot be read or replayed; the message says which and why."""


@dataclass(frozen=True)
class Recorded:
    """One evaluation as the daemon made it: inputs, the evaluation, and the action outcomes."""

    target: Target
    config: Config
    at: datetime
    observation: Observation
    state_before: TargetState | None
    evaluation: Evaluation  # straight from `evaluate`, before any action outcome
    outcomes: tuple[ActionOutcome, ...]  # in the order the actions were carried out
    state_after: TargetState  # after the outcomes were folded in
    actions: tuple[dict[str, Any], ...] = ()  # audit records: requests and responses
    # The reference rows, when the writer may copy them: a DataFrame, or a function giving one
    # (called only when the writer has no copy of that reference yet).
    reference_frame: Any = None


class BundleWriter:
    """Writes bundles under `settings.path` and keeps the newest `keep`, none older than
    `max_age`."""

    def __init__(
        self, settings: Bundles, path: str, log: Any, redactor: Redactor | None = None
    ) -> None:
        self.settings = settings
        self.path = path
        self.fs, self.root = fsspec.core.url_to_fs(path, **settings.storage_options)
        self.log = log
        # The manifest's config has its secrets as *** already; this also catches one quoted
        # in a reason or an action's request body.
        self.redactor = redactor if redactor is not None else Redactor()
        # reference.parquet's bytes by the reference's fingerprint, newest last: thousands of
        # targets sharing one reference encode it once, not in each target's first bundle.
        self._references: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()  # reports' thread writes bundles too

    def write(self, recorded: Recorded, event: str) -> str:
        """Write one bundle; its path (or URL) is returned."""
        name = f"{recorded.at:%Y%m%dT%H%M%S%fZ}-{recorded.target.name}-{_slug(event)}"
        folder = posixpath.join(self.root, name)
        self.fs.makedirs(folder, exist_ok=True)
        observation = recorded.observation
        samples = observation.samples
        if samples is not None:
            self._parquet(folder, "current.parquet", samples)
        reference, reference_file = observation.reference, None
        if reference is not None and recorded.reference_frame is not None:
            encoded = self._reference_bytes(reference, recorded.reference_frame)
            if encoded is not None:
                self._copy_reference(folder, reference.fingerprint, encoded)
                reference_file = "reference.parquet"
        labels, labels_reference_file = observation.labels, None
        if labels is not None and labels.rows is not None:
            self._parquet(folder, "labelled.parquet", labels.rows)
        if labels is not None and labels.reference is not None:
            cells = labels.reference.shape[0] * labels.reference.shape[1]
            if cells <= self.settings.max_reference_cells:
                self._parquet(folder, "reference_labels.parquet", labels.reference)
                labels_reference_file = "reference_labels.parquet"
        manifest = self.redactor.data(
            manifest_of(recorded, event, reference_file, labels_reference_file)
        )
        # Whole or not at all: written beside and renamed into place, so a crash or a full disk
        # in the middle of it never leaves a manifest that makes a half bundle look complete.
        part = posixpath.join(folder, ".manifest.json.part")
        with self.fs.open(part, "w") as f:
            json.dump(manifest, f, indent=1)  # key order is meaning: columns, checks
        self.fs.mv(part, posixpath.join(folder, "manifest.json"))
        self._prune(recorded.at)
        return self.fs.unstrip_protocol(folder) if "://" in self.path else folder

    def _parquet(self, folder: str, name: str, frame: pd.DataFrame) -> None:
        with self.fs.open(posixpath.join(folder, name), "wb") as f:
            f.write(_parquet_bytes(frame))

    def _reference_bytes(self, reference: Reference, frame: Any) -> bytes | None:
        """reference.parquet's content for `reference`, encoded once per fingerprint; None when
        the rows read again are not the reference the evaluation used (it changed since)."""
        with self._lock:
            if reference.fingerprint in self._references:
                self._references.move_to_end(reference.fingerprint)
                return self._references[reference.fingerprint]
        rows = frame() if callable(frame) else frame
        if rows is None or not _same_reference(reference, rows):
            return None
        encoded = _parquet_bytes(rows)
        with self._lock:
            self._references[reference.fingerprint] = encoded
            while sum(map(len, self._references.values())) > REFERENCE_BYTES_KEPT:
                if len(self._references) == 1:
                    break
                self._references.popitem(last=False)
        return encoded

    def _copy_reference(self, folder: str, fingerprint: str, encoded: bytes) -> None:
        """The bundle's reference.parquet. On a local disk, a hard link to one copy per
        reference under `.references/` (a bundle copied elsewhere still holds its own file; a
        thousand bundles of one reference hold its blocks once); elsewhere, the bytes."""
        path = posixpath.join(folder, "reference.parquet")
        if isinstance(self.fs, LocalFileSystem):
            shared = os.path.join(self.root, REFERENCES, f"{fingerprint}.parquet")
            with contextlib.suppress(OSError):  # e.g. links not allowed: the bytes, below
                if not os.path.exists(shared):
                    os.makedirs(os.path.dirname(shared), exist_ok=True)
                    part = f"{shared}.part-{os.getpid()}-{threading.get_ident()}"
                    with open(part, "wb") as f:
                        f.write(encoded)
                    os.replace(part, shared)
                if os.path.exists(path) and os.path.samefile(shared, path):
                    return  # a bundle written again (a retry): its link is in place
                # Linked beside, then renamed over whatever file a bundle written again held.
                link = f"{path}.link-{os.getpid()}-{threading.get_ident()}"
                os.link(shared, link)
                os.replace(link, path)
                return
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # an old link: the bytes below must not go into the shared copy
        with self.fs.open(path, "wb") as f:
            f.write(encoded)

    def _prune(self, now: datetime) -> None:
        try:
            names = sorted(posixpath.basename(p) for p in self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return
        dated = [(n, _bundle_time(n)) for n in names]
        dated = [(n, t) for n, t in dated if t is not None]
        oldest_kept = now - self.settings.max_age
        stale = dated[: max(0, len(dated) - self.settings.keep)]
        stale += [(n, t) for n, t in dated if t is not None and t < oldest_kept]
        for name in {n for n, _ in stale}:
            bundle = posixpath.join(self.root, name)
            # The manifest first: a prune cut short leaves an incomplete folder (ignored, and
            # removed by the next prune), never a listed bundle without its data. Another
            # replica's retention may get there first.
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(posixpath.join(bundle, "manifest.json"))
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(bundle, recursive=True)
        if stale and isinstance(self.fs, LocalFileSystem):
            self._prune_references()

    def _prune_references(self) -> None:
        """Remove the shared reference copies no bundle links to any more."""
        shared = os.path.join(self.root, REFERENCES)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(shared):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_nlink == 1:
                        os.remove(entry.path)


def manifest_of(
    recorded: Recorded,
    event: str,
    reference_file: str | None,
    labels_reference_file: str | None = None,
) -> dict[str, Any]:
    """The manifest of a bundle: plain JSON, every value from `to_json`."""
    observation = recorded.observation
    reference = observation.reference
    spec = recorded.target.reference
    samples = observation.samples
    return {
        "format": FORMAT,
        "version": VERSION,
        "event": event,
        "target": recorded.target.name,
        "at": recorded.at.isoformat(),
        # The recorded target's config: the other targets' would be most of every manifest
        # when one rules file holds thousands (for_each), and replay needs none of them.
        "config": recorded.config.model_copy(update={"targets": [recorded.target]}).model_dump(
            mode="json", by_alias=True
        ),
        "observation": {
            "samples": {
                "status": str(observation.samples_status),
                "reason": observation.samples_reason,
                "file": "current.parquet" if samples is not None else None,
                "rows": None if samples is None else len(samples),
                "time_column": observation.time_column,
            },
            "reference": {
                "status": str(observation.reference_status),
                "reason": observation.reference_reason,
                "file": reference_file,
                "fingerprint": reference.fingerprint if reference is not None else None,
                "columns": list(reference.columns) if reference is not None else None,
                "kinds": [str(k) for k in reference.kinds] if reference is not None else None,
                "source": spec.source,
                "start": spec.start.isoformat() if spec.start else None,
                "end": spec.end.isoformat() if spec.end else None,
            },
            "metrics": {name: to_json(m) for name, m in observation.metrics.items()},
            "workload": to_json(observation.workload) if observation.workload else None,
            "labels": _labels_manifest(observation.labels, labels_reference_file),
            "revisions": _revisions_of(recorded),
        },
        "state_before": to_json(recorded.state_before) if recorded.state_before else None,
        "evaluation": {
            "state": to_json(recorded.evaluation.state),
            "decisions": [to_json(d) for d in recorded.evaluation.decisions],
            "results": [to_json(r) for r in recorded.evaluation.results],
        },
        "outcomes": [to_json(o) for o in recorded.outcomes],
        "state_after": to_json(recorded.state_after),
        "actions": list(recorded.actions),
    }


# ------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Bundle:
    """A bundle read back: the recorded evaluation, and what re-runs it."""

    path: str
    manifest: Mapping[str, Any]
    recorded: Recorded

    @property
    def target(self) -> Target:
        return self.recorded.target

    @property
    def config(self) -> Config:
        return self.recorded.config

    @property
    def at(self) -> datetime:
        return self.recorded.at

    def replay(self, target: Target | None = None) -> Replayed:
        """Re-run the evaluation with the recorded inputs (and the recorded action outcomes)
        on `target` (default: the recorded one; give a changed one to ask what if)."""
        return replay_recorded(self.recorded, target)

    def what_if(self, **changes: Any) -> Replayed:
        """Replay with the target's settings changed: `what_if(**{"for": "10m"})`,
        `what_if(checks={"feature_drift": {"threshold": 0.2}})`, `what_if(cooldown="1h")`.
        Checks are changed by name; any other key replaces the target's setting."""
        return self.replay(changed_target(self.target, changes))


@dataclass(frozen=True)
class Replayed:
    """A re-run evaluation; `same_as_recorded` compares it with the bundle, exactly."""

    evaluation: Evaluation
    state_after: TargetState
    decisions: tuple[Decision, ...]  # the evaluation's, then the follow-ups of the outcomes
    recorded: Recorded

    @property
    def same_as_recorded(self) -> bool:
        return not self.differences()

    def differences(self) -> list[str]:
        """What differs from the recording (empty: bit for bit the same, as JSON)."""
        rec = self.recorded
        found = []
        pairs = [
            ("state", self.evaluation.state, rec.evaluation.state),
            ("decisions", self.evaluation.decisions, rec.evaluation.decisions),
            ("results", self.evaluation.results, rec.evaluation.results),
            ("state_after", self.state_after, rec.state_after),
        ]
        for name, ours, theirs in pairs:
            if _as_json(ours) != _as_json(theirs):
                found.append(name)
        return found

    @property
    def rolls_back(self) -> bool:
        return any(d.kind == "rollback" for d in self.decisions)


def replay_recorded(recorded: Recorded, target: Target | None = None) -> Replayed:
    """The same steps the daemon's runner took: evaluate, then fold each recorded outcome."""
    target = target or recorded.target
    evaluation = evaluate(target, recorded.observation, recorded.state_before, recorded.at)
    state = evaluation.state
    decisions = list(evaluation.decisions)
    for outcome in recorded.outcomes:
        state, follow_ups = record_action(target, state, outcome, recorded.at)
        decisions += follow_ups
    return Replayed(evaluation, state, tuple(decisions), recorded)


def load_bundle(path: str, storage_options: Mapping[str, Any] | None = None) -> Bundle:
    """Read the bundle at `path` (a folder or an fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    try:
        with fs.open(posixpath.join(root, "manifest.json"), "r") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise BundleError(
            f"{path}: no manifest.json; not a bundle, or one still being written"
        ) from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BundleError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"this mlwatchdog reads {FORMAT} version {VERSION}"
        )
    # Recorded with its secrets as ***: what replay needs is all there, the secrets are not.
    config = Config.model_validate(manifest["config"], context={"redacted": True})
    target = config.target(manifest["target"])
    at = datetime.fromisoformat(manifest["at"])
    observation = _observation(fs, root, path, manifest, target, at)
    before = manifest["state_before"]
    recorded = Recorded(
        target=target,
        config=config,
        at=at,
        observation=observation,
        state_before=from_json(TargetState, before) if before else None,
        evaluation=Evaluation(
            from_json(TargetState, manifest["evaluation"]["state"]),
            tuple(from_json(Decision, d) for d in manifest["evaluation"]["decisions"]),
            tuple(from_json(CheckResult, r) for r in manifest["evaluation"]["results"]),
        ),
        outcomes=tuple(from_json(ActionOutcome, o) for o in manifest["outcomes"]),
        state_after=from_json(TargetState, manifest["state_after"]),
        actions=tuple(manifest.get("actions") or ()),
    )
    return Bundle(path, manifest, recorded)


def list_bundles(path: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The complete bundles under `path` (those with a manifest), oldest first."""
    fs, root = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    try:
        names = sorted(posixpath.basename(p) for p in fs.ls(root, detail=False))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        folder = posixpath.join(root, name)
        if _bundle_time(name) is not None and fs.exists(posixpath.join(folder, "manifest.json")):
            found.append(fs.unstrip_protocol(folder) if "://" in path else folder)
    return found


def iter_bundles(path: str) -> Iterator[Bundle]:
    for found in list_bundles(path):
        yield load_bundle(found)


def changed_target(target: Target, changes: Mapping[str, Any]) -> Target:
    """`target` with settings changed, validated as rules.yaml would be. Mappings merge into
    the setting (`{"rollback": {"enabled": False}}` keeps the rest of `rollback`); checks are
    changed by name (`{"checks": {"feature_drift": {"threshold": 0.2}}}`)."""
    data = target.model_dump(mode="json", by_alias=True)
    for key, value in changes.items():
        if key == "checks":
            by_name = {c["name"]: c for c in data["checks"]}
            if not isinstance(value, Mapping):
                raise BundleError(_set_issues([("checks", "name a check: checks.NAME.KEY=VALUE")]))
            for name, fields in value.items():
                if name not in by_name:
                    known = sorted(by_name)
                    problem = f"no check {name!r} in target {target.name!r}; it has {known}"
                    raise BundleError(_set_issues([(f"checks.{name}", problem)]))
                if not isinstance(fields, Mapping):
                    example = f"give a key of the check, e.g. checks.{name}.threshold=0.2"
                    raise BundleError(_set_issues([(f"checks.{name}", example)]))
                _merge(by_name[name], fields)
        elif isinstance(value, Mapping) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = value
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(data, exc)
        raise BundleError(_set_issues([(_set_key(data, p), m) for p, m in problems])) from None


def _set_key(data: Mapping[str, Any], path: tuple[str | int, ...]) -> str:
    """A key path in a target's data as `--set` spells it: checks by name, dots between keys."""
    parts: list[str] = []
    for i, part in enumerate(path):
        if i == 1 and path[0] == "checks" and isinstance(part, int) and part < len(data["checks"]):
            parts.append(str(data["checks"][part]["name"]))
        elif isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts)


def _set_issues(problems: list[tuple[str, str]]) -> str:
    """Problems of `--set` changes as `mlwatchdog check` lists a file's: `--set: key: what`."""
    lines = [str(ConfigIssue("--set", None, key, message)) for key, message in problems]
    if len(lines) == 1:
        return lines[0]
    return f"--set: {len(lines)} problem(s):\n" + "\n".join(f"  {line}" for line in lines)


def parse_changes(assignments: list[str]) -> dict[str, Any]:
    """`["for=10m", "checks.feature_drift.threshold=0.2"]` as the mapping `changed_target` takes
    (values read as YAML: numbers, booleans, strings)."""
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise BundleError(f"--set {assignment!r}: write KEY=VALUE, e.g. for=10m")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise BundleError(_set_issues([(key.strip(), f"{raw!r}: {problem}")])) from None
        node = changes
        *parents, last = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return changes


def _merge(into: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


# ------------------------------------------------------------------------------------ helpers


def _observation(
    fs: Any, root: str, path: str, manifest: Mapping[str, Any], target: Target, at: datetime
) -> Observation:
    recorded = manifest["observation"]
    samples_info, reference_info = recorded["samples"], recorded["reference"]
    samples = None
    if samples_info["file"]:
        with fs.open(posixpath.join(root, samples_info["file"]), "rb") as f:
            samples = read_parquet(f)
    reference = None
    if reference_info["fingerprint"] is not None:
        if not reference_info["file"]:
            raise BundleError(
                f"{path}: the reference was too large to copy (fingerprint "
                f"{reference_info['fingerprint'][:12]}, source {reference_info['source']!r}); "
                "re-read it from that source and pass it to replay_recorded"
            )
        with fs.open(posixpath.join(root, reference_info["file"]), "rb") as f:
            frame = read_parquet(f)
        reference = Reference(
            frame, columns=reference_info["columns"], kinds=reference_info["kinds"]
        )
        if reference.fingerprint != reference_info["fingerprint"]:
            raise BundleError(f"{path}: reference.parquet does not match its fingerprint")
    return Observation(
        target=target.name,
        at=at,
        samples=samples,
        samples_status=DataStatus(samples_info["status"]),
        samples_reason=samples_info["reason"],
        reference=reference,
        reference_status=DataStatus(reference_info["status"]),
        reference_reason=reference_info["reason"],
        metrics={k: from_json(MetricReading, v) for k, v in recorded["metrics"].items()},
        workload=from_json(WorkloadHealth, recorded["workload"]) if recorded["workload"] else None,
        time_column=samples_info.get("time_column"),  # absent in bundles before issue 14
        labels=_labels(fs, root, recorded.get("labels")),
        revisions=_revision_windows(samples, recorded.get("revisions")),
    )


def _labels_manifest(labels: LabelledRows | None, reference_file: str | None) -> Any:
    """Performance checks' inputs: the joined rows, and the reference rows with labels (copied
    when within bundles.max_reference_cells, as the reference is)."""
    if labels is None:
        return None
    return {
        "status": str(labels.status),
        "reason": labels.reason,
        "file": "labelled.parquet" if labels.rows is not None else None,
        "reference_status": str(labels.reference_status),
        "reference_reason": labels.reference_reason,
        "reference_file": reference_file,
        "reference_copied": reference_file is not None or labels.reference is None,
    }


def _labels(fs: Any, root: str, recorded: Mapping[str, Any] | None) -> LabelledRows | None:
    """The LabelledRows a bundle recorded (None: none, or a bundle from before issue 14)."""
    if not recorded:
        return None
    frames = []
    for key in ("file", "reference_file"):
        frame = None
        if recorded[key]:
            with fs.open(posixpath.join(root, recorded[key]), "rb") as f:
                frame = read_parquet(f)
        frames.append(frame)
    reference_status, reference_reason = (
        DataStatus(recorded["reference_status"]),
        recorded["reference_reason"],
    )
    if not recorded["reference_copied"]:  # too large to copy: replay cannot estimate
        reference_status = DataStatus.NO_DATA
        reference_reason = "the reference rows with labels were too large to copy into the bundle"
    return LabelledRows(
        frames[0],
        DataStatus(recorded["status"]),
        recorded["reason"],
        frames[1],
        reference_status,
        reference_reason,
    )


def _revisions_of(recorded: Recorded) -> dict[str, str] | None:
    """The canary in progress and the column splitting the window (current.parquet keeps it)."""
    windows = recorded.observation.revisions
    column = revision_column(recorded.config, recorded.target)
    if windows is None or column is None:
        return None
    return {"column": column, "canary": windows.canary, "stable": windows.stable}


def _revision_windows(samples: Any, recorded: Mapping[str, str] | None) -> RevisionWindows | None:
    if recorded is None:  # no canary then (or a bundle from before per-revision windows)
        return None
    revisions = Revisions(canary=recorded["canary"], stable=recorded["stable"])
    return by_revision(samples, recorded["column"], revisions)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _same_reference(reference: Reference, frame: pd.DataFrame) -> bool:
    """Whether `frame` (read again for the bundle) is the reference the evaluation used."""
    try:
        again = Reference(frame, columns=list(reference.columns), kinds=list(reference.kinds))
    except MlwatchdogError:
        return False
    return again.fingerprint == reference.fingerprint


def _as_json(value: Any) -> str:
    if isinstance(value, tuple):
        return json.dumps([to_json(v) for v in value], sort_keys=True)
    return json.dumps(to_json(value), sort_keys=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def _bundle_time(name: str) -> datetime | None:
    match = _NAME.match(name)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
