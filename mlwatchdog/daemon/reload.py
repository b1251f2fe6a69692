"""Config reload: what a new rules.yaml changes (`plan_reload`, pure) and the `ConfigWatcher` that
notices a changed file (or a SIGHUP) and calls `Daemon.reload`, the one place that applies it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlwatchdog.core import CheckRecord, TargetState
from mlwatchdog.rules import Config, ConfigIssue, KServeSource, MetricCheck, Target

# Daemon settings the running process was built from (its HTTP socket, state and sink folders,
# Kubernetes client and Lease, audit file, report writer, logging): a reload keeps the running
# values and says that the new ones need a restart. The rest of `daemon:` applies at once.
RESTART_ONLY = (
    "http",
    "state_dir",
    "log_level",
    "sink",
    "kubernetes",
    "leader_election",
    "audit_log",
    "reports",
    "bundles",
)


@dataclass(frozen=True)
class ReloadPlan:
    """What applying a new config changes. `config` is what the daemon runs afterwards: the new
    file, with the restart-only settings still those the daemon started with."""

    config: Config
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]  # the target's definition, or a source it reads, changed
    unchanged: tuple[str, ...]
    rescheduled: tuple[str, ...]  # kept targets whose schedule changed (interval or jitter)
    sources: tuple[str, ...]  # sources added, removed or redefined
    settings: tuple[str, ...]  # daemon settings applied now, as dotted keys
    restart_only: tuple[str, ...]  # daemon settings that changed but need a restart

    @property
    def empty(self) -> bool:
        """Nothing at all differs: the reload is a no-op."""
        return not (
            self.added
            or self.removed
            or self.changed
            or self.sources
            or self.settings
            or self.restart_only
        )


def plan_reload(current: Config, new: Config) -> ReloadPlan:
    """Compare the running config with a new, validated one; pure."""
    # Python mode: secrets compare by value (as JSON they are all `***`, so a rotated token
    # would look unchanged).
    old_daemon = current.daemon.model_dump()
    new_daemon = new.daemon.model_dump()
    restart_only = tuple(
        key
        for name in RESTART_ONLY
        if name in old_daemon
        for key in changed_keys(old_daemon[name], new_daemon.get(name), f"daemon.{name}")
    )
    settings = tuple(
        key
        for name in new_daemon
        if name not in RESTART_ONLY
        for key in changed_keys(old_daemon.get(name), new_daemon[name], f"daemon.{name}")
    )
    kept_settings = {n: getattr(current.daemon, n) for n in RESTART_ONLY if n in old_daemon}
    config = new.model_copy(update={"daemon": new.daemon.model_copy(update=kept_settings)})

    sources = tuple(
        sorted(
            name
            for name in set(current.sources) | set(config.sources)
            if current.sources.get(name) != config.sources.get(name)
        )
    )
    before = {t.name: t for t in current.targets}
    after = {t.name: t for t in config.targets}
    kept = [name for name in after if name in before]
    changed = tuple(
        n for n in kept if before[n] != after[n] or set(sources) & set(source_names(after[n]))
    )
    jitter = current.daemon.jitter != config.daemon.jitter
    return ReloadPlan(
        config=config,
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=changed,
        unchanged=tuple(n for n in kept if n not in changed),
        rescheduled=tuple(n for n in kept if jitter or before[n].interval != after[n].interval),
        sources=sources,
        settings=settings,
        restart_only=restart_only,
    )


def restart_needed(
    config: Config,
    file: str,
    *,
    kubernetes: bool,
    elected: bool,
    sink: bool,
    reviews: bool = True,
) -> tuple[list[ConfigIssue], list[str]]:
    """What a daemon started with(out) a Kubernetes API, leader election and the KServe sink
    cannot do for `config` without a restart: issues that refuse the reload (acting for real,
    TokenReviews without an API client), and warnings (a `type: kserve` source without the sink
    to fill it)."""
    live = [i for i, t in enumerate(config.targets) if not t.rollback.dry_run]
    if not kubernetes:
        why = "this daemon runs without a Kubernetes API; restart it to act, or keep dry_run: true"
    elif not elected and config.daemon.leader_election.enabled is None:
        why = (
            "acting turns on leader election, which this daemon started without; restart it "
            "(or set daemon.leader_election.enabled: false and run one replica)"
        )
    else:
        live = []
    issues = [
        ConfigIssue(
            file,
            None,
            f"targets[{i}].rollback.dry_run",
            f"dry_run: false for target {config.targets[i].name!r}, but {why}",
        )
        for i in live
    ]
    if config.daemon.auth.kubernetes is not None and not reviews:
        issues.append(
            ConfigIssue(
                file,
                None,
                "daemon.auth.kubernetes",
                "ServiceAccount tokens are checked with TokenReviews, but this daemon started "
                "without a Kubernetes API client: restart it, or use daemon.auth.tokens",
            )
        )
    kserve = sorted(n for n, s in config.sources.items() if isinstance(s, KServeSource))
    warnings = []
    if kserve and not sink:
        warnings.append(
            f"config: source(s) {kserve} read the KServe sink, which this daemon started "
            "without; restart it to serve POST /sink/kserve"
        )
    return issues, warnings


def carry_state(state: TargetState | None, target: Target) -> TargetState | None:
    """A kept target's state under its new definition: phase, incident and the timers of kept
    checks stay; removed checks go; new checks start inactive (as the core's next `decide`)."""
    if state is None:
        return None
    checks = {c.name: state.checks.get(c.name, CheckRecord()) for c in target.checks}
    return replace(state, checks=checks)


def source_names(target: Target) -> list[str]:
    """The sources a target reads: its samples, its reference, its metric checks', its labels."""
    metric = [c.source for c in target.checks if isinstance(c, MetricCheck)]
    labels = [target.labels.source] if target.labels is not None else []
    return [target.samples.source, target.reference.source, *metric, *labels]


def changed_keys(old: Any, new: Any, prefix: str) -> list[str]:
    """The dotted keys under `prefix` where two JSON-like values differ."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [
            key
            for name in sorted(set(old) | set(new), key=str)
            for key in changed_keys(old.get(name), new.get(name), f"{prefix}.{name}")
        ]
    return [] if old == new else [prefix]


# ------------------------------------------------------------------------------------ watching

Fingerprint = tuple[int, int, str] | None


def fingerprint(path: Path) -> Fingerprint:
    """mtime, size and content hash of the file `path` names now (symlinks followed, opened
    afresh each time, so a ConfigMap's swapped `..data` link is seen); None if unreadable."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, digest


class ConfigWatcher:
    """A thread that polls the rules file every `interval()` seconds (0: no polling) and calls
    `reload(path)` when it changed, or at once after `request()` (what SIGHUP does).

    A change is reloaded only once two reads `settle` seconds apart agree, so a file being
    written in place is not read half-way (one written slower than that fails to validate and
    is reloaded again once complete: its fingerprint changes again).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        reload: Callable[[Path], bool],
        interval: Callable[[], float],
        log: Any,
        settle: float = 0.2,
    ) -> None:
        self.path = Path(path)
        self.reload = reload
        self.interval = interval
        self.log = log
        self.settle = settle
        self.last = fingerprint(self.path)  # what the daemon runs (or last tried)
        self._asked = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Reload soon, changed or not. Only sets an event: safe in a signal handler."""
        self._asked.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._asked.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def poll(self, force: bool = False) -> bool | None:
        """Reload if the file changed (or `force`); the reload's result, None if nothing to do."""
        seen = fingerprint(self.path)
        if seen == self.last and not force:
            return None
        for _ in range(25):  # a file that never settles is read anyway; validation judges it
            if self._stopping.wait(self.settle):
                return None
            again = fingerprint(self.path)
            if again == seen:
                break
            seen = again
        self.last = seen
        return self.reload(self.path)

    def _run(self) -> None:
        while not self._stopping.is_set():
            seconds = self.interval()
            asked = self._asked.wait(seconds if seconds > 0 else None)
            if self._stopping.is_set():
                return
            self._asked.clear()
            try:
                self.poll(force=asked)
            except Exception:  # a bug here must not end reloading for the daemon's lifetime
                self.log.exception("config watch failed", file=str(self.path))
