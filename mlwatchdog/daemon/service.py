"""Wiring: the one place that builds the daemon (sources, actuators, clock, scheduler, HTTP)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from mlwatchdog.actions import gitops
from mlwatchdog.actions.actuator import KubeActuator
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.dryrun import DryRunActuator
from mlwatchdog.actions.kube_api import KubeApi, load_api_client
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.auth import Authenticator, kubernetes_reviewer
from mlwatchdog.daemon.faults import Faults
from mlwatchdog.daemon.http_server import listening_sockets, uvicorn_options
from mlwatchdog.daemon.journal import Journal
from mlwatchdog.daemon.leader import LeaderElector, default_identity
from mlwatchdog.daemon.memory import RELEASE_EVERY, release_freed_memory
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.reload import ConfigWatcher, ReloadPlan, plan_reload, restart_needed
from mlwatchdog.daemon.reports import ReportWriter
from mlwatchdog.daemon.runner import TargetRunner
from mlwatchdog.daemon.shards import shard_of
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.errors import ConfigError
from mlwatchdog.replay.bundle import BundleWriter
from mlwatchdog.rules import Config, ConfigIssue, KServeSource, Target, load_config
from mlwatchdog.rules.schema import exposed_without_auth
from mlwatchdog.rules.secret import Redactor, mask_url, secret_values
from mlwatchdog.sources.kserve import SinkStore
from mlwatchdog.sources.observe import Observer

SKIPS_EVERY = 60.0  # seconds: at most one warning this often about evaluations skipped


class _PerRunSkips(logging.Filter):
    """APScheduler's warning for each run it skips or drops late: a saturated daemon would print
    one a target a round; `Daemon._skipped` counts them and says so once a minute instead."""

    TEMPLATES = (
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
        'Run time of job "%s" was missed by %s',
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.TEMPLATES


for _name in ("apscheduler.scheduler", "apscheduler.executors.default"):
    logging.getLogger(_name).addFilter(_PerRunSkips())


def utc_now() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """The scheduled evaluation of every target of one config; with `sink_only`, the KServe sink
    alone (`mlwatchdog sink`: no evaluation, no leader election, no action), as many replicas
    as the traffic needs, storing where the evaluating daemon reads (daemon.sink.path)."""

    def __init__(
        self,
        config: Config,
        log: Any,
        clock: Callable[[], datetime] = utc_now,
        workers: int = 4,
        *,
        config_path: str | os.PathLike[str] | None = None,
        redactor: Redactor | None = None,
        sink_only: bool = False,
    ) -> None:
        self.config = config
        self.sink_only = sink_only
        # Scrubs the config's secrets (and token files' contents) from logs, files and answers.
        self.redactor = redactor if redactor is not None else Redactor()
        self.redactor.update(secret_values(config))
        # The rules file `config` came from: watched and reloaded (None: no reload).
        self.config_path = Path(config_path) if config_path is not None else None
        self.log = log
        self.clock = clock
        self.metrics = DaemonMetrics()
        # Failing writes: /metrics, the log, /readyz (which answers anyone: scrubbed).
        self.faults = Faults(self.metrics, log, self.redactor)
        self.store = StateStore(config.daemon.state_dir, log, self.redactor)
        self.observer = Observer(config, on_set_aside=self.metrics.set_aside)
        # What KServe's logger sends to POST /sink/kserve, when a `type: kserve` source reads it.
        kserve = any(isinstance(s, KServeSource) for s in config.sources.values())
        if sink_only and not kserve:
            raise ConfigError(
                "mlwatchdog sink serves the KServe sink, but no source of this config has "
                "`type: kserve` to read what it would store: add one, or use mlwatchdog run"
            )
        # A store that fails takes the pod out of its Service (/readyz) until it writes again.
        # Named as the audit trail's URL is: a password in it masked.
        sink = config.daemon.sink
        on_fault = self.faults.reporter("sink", mask_url(sink.path))
        self.sink = SinkStore(sink, on_fault) if kserve else None
        self.elector: LeaderElector | None = None
        audit_log = config.daemon.audit_log
        self.audit = AuditLog(
            audit_log.reveal(),
            storage_options=config.daemon.audit_storage_options,
            redactor=self.redactor,
            on_fault=self.faults.reporter("audit", str(audit_log)),
        )
        # Phase changes, decisions and outcomes of every target: incidents over HTTP, reports.
        journal = self.store.directory / "journal.jsonl"
        self.journal = Journal(
            journal, redactor=self.redactor, on_fault=self.faults.reporter("journal", str(journal))
        )
        # Reports and bundles go beside the state folder unless given: .demo/state ->
        # .demo/reports, .demo/bundles.
        self.reports = ReportWriter(
            config.daemon.reports, self.journal, self.audit, self.observer, log, self.redactor,
            directory=config.daemon.reports.path or config.daemon.beside_state("reports"),
        )  # fmt: skip
        bundles = config.daemon.bundles
        where = bundles.path.reveal() if bundles.path else config.daemon.beside_state("bundles")
        self.bundles = BundleWriter(bundles, where, log, self.redactor) if bundles.enabled else None
        self.api_client = self._api_client()
        # A sink-only process never acts (nor counts as a leader): a dry-run actuator, unused.
        self.actuator = DryRunActuator(log, self.audit) if sink_only else self._actuator()
        review = None
        if self.api_client is not None:
            kube = config.daemon.kubernetes
            api = KubeApi(self.api_client, kube.timeout.total_seconds(), kube.attempts)
            review = kubernetes_reviewer(api)
        self.authenticator = Authenticator(
            lambda: self.config.daemon.auth, review, on_secret=self.redactor.add, log=log
        )
        self.authenticator.read_token_files()
        self.runners = {
            t.name: self._runner(t, self.observer) for t in config.targets if not sink_only
        }
        self.scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=workers)}
        )
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._skips: dict[str, list[str]] = {"busy": [], "late": []}  # since the last warning
        self._skips_told = time.monotonic() - SKIPS_EVERY  # the first skip is told at once
        self._skips_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        # Set when the daemon stops: evaluations queued behind the running ones are dropped.
        self._stopping = threading.Event()
        self._dropped_at_stop: list[str] = []  # their targets (list.append: thread-safe)
        self.reload_errors: list[str] = []  # why the last reload failed (empty after a success)
        self.watcher: ConfigWatcher | None = None
        if self.config_path is not None:
            self.watcher = ConfigWatcher(
                self.config_path,
                self.reload,
                lambda: self.config.daemon.reload_interval.total_seconds(),
                log,
            )
        self.metrics.config_loaded(clock().timestamp())

    def _runner(self, target: Target, observer: Observer) -> TargetRunner:
        return TargetRunner(
            target,
            observer,
            self.actuator,
            self.store,
            self.metrics,
            self.log,
            self.clock,
            self.journal,
            bundles=self.bundles,
            audit=self.audit,
            faults=self.faults,
            reports=self.reports,
        )

    def _api_client(self) -> Any:
        """The Kubernetes API client, when a target acts on a workload or callers prove who
        they are with ServiceAccount tokens; else None (nothing is read from a cluster)."""
        settings = self.config.daemon
        acting = not self.sink_only and any(t.workload.kind != "none" for t in self.config.targets)
        if not acting and settings.auth.kubernetes is None:
            return None
        api_client = load_api_client(settings.kubernetes)
        if api_client is None and settings.auth.kubernetes is not None:
            raise ConfigError(
                "daemon.auth.kubernetes checks ServiceAccount tokens with a TokenReview, but "
                f"there is no Kubernetes API (daemon.kubernetes.mode: {settings.kubernetes.mode}, "
                "no in-cluster ServiceAccount, no kubeconfig): run in the cluster, give "
                "daemon.kubernetes.kubeconfig, or use daemon.auth.tokens instead"
            )
        return api_client

    def _actuator(self) -> KubeActuator | DryRunActuator:
        """The Kubernetes actuator (with leader election when acting for real), or the offline
        dry-run one when there is no cluster to talk to."""
        settings = self.config.daemon
        audit = self.audit
        live = [t.name for t in self.config.targets if not t.rollback.dry_run]
        acting = [t for t in self.config.targets if t.workload.kind != "none"]
        api_client = self.api_client if acting else None
        if api_client is None:
            if live:
                raise ConfigError(
                    f"target(s) {live} set rollback.dry_run: false, but there is no Kubernetes "
                    f"API to act on (daemon.kubernetes.mode: {settings.kubernetes.mode}, no "
                    "in-cluster ServiceAccount, no kubeconfig): run in the cluster, give "
                    "daemon.kubernetes.kubeconfig, or keep dry_run: true"
                )
            if settings.leader_election.shards > 1:
                raise ConfigError(
                    f"daemon.leader_election.shards: {settings.leader_election.shards} splits "
                    "the targets between replicas through Leases, but no target acts on a "
                    "workload through a Kubernetes API: remove shards (one replica watches "
                    "every target), or give the targets workloads and a cluster"
                )
            self.metrics.leader.set(1)
            return DryRunActuator(self.log, audit)
        election = settings.leader_election
        identity = election.identity or default_identity()
        api = KubeApi(
            api_client, settings.kubernetes.timeout.total_seconds(), settings.kubernetes.attempts
        )
        enabled = election.enabled if election.enabled is not None else bool(live)
        enabled = enabled or (election.enabled is None and election.shards > 1)
        dry_run_on_server = settings.kubernetes.server_dry_run
        if not enabled:
            if election.shards > 1:
                raise ConfigError(
                    f"daemon.leader_election.shards: {election.shards} needs leader election "
                    "(each shard is led through its Lease): remove enabled: false, or shards"
                )
            if live:
                self.log.warning(
                    "leader election is off: run one replica only, or two could act at once"
                )
            self.metrics.leader.set(1)
            return KubeActuator(
                api, audit, self.log, identity, clock=self.clock, server_dry_run=dry_run_on_server
            )
        self.elector = LeaderElector(
            api_client, election, identity, self.log, on_change=self._leading_changed
        )
        return KubeActuator(
            api,
            audit,
            self.log,
            identity,
            self.elector.leads,
            self.clock,
            server_dry_run=dry_run_on_server,
        )

    # --- GitOps (issue 13) ----------------------------------------------------------------------
    def resolve_incident(self, incident: str, by: str) -> list[dict[str, Any]] | None:
        """A person resolved `incident`: restore the Argo CD / Flux sync paused for it (each
        object's result, audited), or None when the journal knows no such incident."""
        results: list[dict[str, Any]] = []
        if isinstance(self.actuator, KubeActuator):
            results = gitops.resolve(self.actuator, list(self.config.targets), incident, by)
        known = any(e.get("incident") == incident for e in self.journal.entries())
        if not results and not known:
            return None
        return results

    # --- end GitOps ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def _schedule(self, target: Target, first: datetime) -> None:
        """(Re)schedule the target's evaluations at its interval, the next one at `first`
        (only while this replica leads the target's shard)."""
        if not self.evaluated_here(target.name):
            return
        interval = target.interval.total_seconds()
        jitter = self.config.daemon.jitter.total_seconds()
        self.scheduler.add_job(
            self._evaluate,
            "interval",
            args=[target.name],
            seconds=interval,
            jitter=jitter or None,
            id=target.name,
            next_run_time=first,
            max_instances=1,  # never two evaluations of one target at a time
            coalesce=True,  # runs missed while busy or suspended collapse into one
            misfire_grace_time=max(1, int(interval)),
            replace_existing=True,  # a reload reschedules under the same id
        )

    def _skipped(self, event: JobEvent) -> None:
        """A scheduled evaluation not run (the scheduler's thread): counted, and said in one
        warning a minute at most, in place of APScheduler's line per skipped run."""
        if event.job_id not in self.runners:
            return  # the sink's pruning, not an evaluation
        reason = "busy" if event.code == EVENT_JOB_MAX_INSTANCES else "late"
        self.metrics.evaluations_skipped.labels(reason).inc()
        with self._skips_lock:
            self._skips[reason].append(event.job_id)
            now = time.monotonic()
            if now - self._skips_told < SKIPS_EVERY:
                return
            busy, late = self._skips["busy"], self._skips["late"]
            self._skips, self._skips_told = {"busy": [], "late": []}, now
        self.log.warning(
            "evaluations skipped: the daemon cannot keep up with its targets' intervals; "
            "lengthen them, or split the targets across replicas (leader_election.shards)",
            busy=len(busy), late=len(late), targets=sorted(set(busy + late))[:10],
            seconds=SKIPS_EVERY,
        )  # fmt: skip

    def _evaluate(self, name: str) -> None:
        """A scheduled evaluation: not when the target's shard was lost since it was scheduled
        (its job is removed at once, but a Lease not renewed in time is lost before the election
        thread can tell)."""
        if self._stopping.is_set():  # queued while the daemon was busy; it is stopping now
            self._dropped_at_stop.append(name)
            return
        runner = self.runners.get(name)
        if runner is not None and self.evaluated_here(name):
            runner.run_once()

    # --- shards (issue 16): daemon.leader_election.shards, daemon/shards.py -------------------
    @property
    def sharded(self) -> bool:
        return self.elector is not None and self.elector.shards > 1

    def evaluated_here(self, target: str) -> bool:
        """Whether this replica evaluates `target`: always without shards (shards: 1, every
        replica evaluates, the leader acts); with shards, while it leads the target's shard."""
        return self.elector is None or self.elector.shards == 1 or self.elector.leads(target)

    def placement(self) -> dict[str, Any]:
        """Which shards this replica leads and which targets it evaluates (/api/v1/status)."""
        elector = self.elector
        shards = elector.shards if elector is not None else 1
        return {
            "identity": elector.identity if elector is not None else None,
            "shards": shards,
            "leases": elector.leases if elector is not None else [],
            "leading": elector.leading() if elector is not None else [0],
            "targets": {
                name: {"shard": shard_of(name, shards), "evaluated_here": self.evaluated_here(name)}
                for name in self.runners
            },
        }

    def publish_placement(self) -> None:
        """mlwatchdog_leader, mlwatchdog_shard_leader and mlwatchdog_target_evaluated_here now.
        Without shards (or without an election) there is one shard, "0"; `mlwatchdog sink`
        leads none (it decides nothing)."""
        elector = self.elector
        leading = elector.leading() if elector is not None else [] if self.sink_only else [0]
        shards = elector.shards if elector is not None else 1
        self.metrics.leader.set(1 if leading else 0)
        for shard in range(shards):
            self.metrics.shard_leader.labels(str(shard)).set(1 if shard in leading else 0)
        self.metrics.evaluated_here.clear()  # targets removed by a reload go with it
        for name in self.runners:
            here = self.evaluated_here(name)
            self.metrics.evaluated_here.labels(name, str(shard_of(name, shards))).set(int(here))

    def _leading_changed(self, shard: int, leading: bool) -> None:
        """The election thread won or lost `shard`: with shards, its targets are scheduled here
        from now on (first run at once) or not any more. Waits for nothing (no reload, no
        evaluation): the thread renews the other shards' Leases too."""
        if self.sharded and self.scheduler.running:
            assert self.elector is not None
            config, runners, now = self.config, self.runners, self.clock()
            targets = [t for t in config.targets if shard_of(t.name, self.elector.shards) == shard]
            for target in targets:
                runner = runners.get(target.name)
                if leading and runner is not None:
                    # Another replica may have evaluated it since this one last did: a state
                    # older than one lease_duration is not carried on (see DESIGN.md).
                    runner.forget_state_before(now - config.daemon.leader_election.lease_duration)
                    self._schedule(target, now)
                elif not leading:
                    with suppress(JobLookupError):
                        self.scheduler.remove_job(target.name)
                    if runner is not None:  # its phase and checks are the heir's to export
                        runner.leave()
            what = "scheduled here" if leading else "no longer evaluated here"
            self.log.info(f"shard targets {what}", shard=shard, targets=[t.name for t in targets])
        self.publish_placement()

    # --- end shards ---------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule each target at its interval, the first run at once."""
        for target in self.config.targets if not self.sink_only else ():
            self._schedule(target, self.clock())
        if self.sink is not None:  # ':' keeps the job id apart from target names
            self.scheduler.add_job(
                self.sink.prune,
                "interval",
                minutes=10,
                id=":sink-retention",
                next_run_time=self.clock(),
            )
        # What the audit trail and the journal could not write (disk full) goes out once it can.
        self.scheduler.add_job(self.flush_pending, "interval", seconds=5, id=":flush-pending")
        # What the evaluations freed goes back to the system (RSS), not kept by malloc.
        self.scheduler.add_job(
            release_freed_memory, "interval", seconds=RELEASE_EVERY, id=":release-memory"
        )
        if self.sharded:  # states restored from disk: exported by the shard's leader, not here
            for name in self.runners:
                self.metrics.forget(name)
        self.publish_placement()
        self.scheduler.start()
        if self.elector is not None:  # after the scheduler: a shard won is scheduled at once
            self.elector.start()
        if self.watcher is not None:
            self.watcher.start()
        self.log.info(
            "daemon started",
            role="sink" if self.sink_only else "evaluator",
            targets=list(self.runners),
            state_dir=str(self.store.directory),
            config_file=str(self.config_path) if self.config_path else None,
        )

    def flush_pending(self) -> None:
        """Write the audit records and journal entries kept while their writes failed."""
        self.audit.flush()
        self.journal.flush()

    def stop(self) -> None:
        """Stop scheduling; wait for running evaluations to finish. Those queued behind them
        (a saturated daemon has up to one per target) are dropped, not run: the scheduler's
        shutdown would wait for every one, keeping a leader's Lease and its pod for as long (a
        restarted pod or the shard's heir evaluates them next)."""
        self._stopping.set()
        self.log.info("daemon stopping")
        if self.watcher is not None:
            self.watcher.stop()  # a reload under way finishes first
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.elector is not None:
            self.elector.stop()  # after the last evaluation: release the Lease for the next
        if self.sink is not None:
            self.sink.close()  # after the HTTP server answered its last event
        # Not waited for: a SIGTERM is answered at once (the decision is in the journal, the
        # audit trail and its bundle; `mlwatchdog report <bundle>` draws the page again).
        if not self.reports.wait(0):
            self.log.warning("investigation reports still being written at exit are not kept")
        self.flush_pending()
        for name, records in (("audit", self.audit), ("journal", self.journal)):
            if records.pending:
                self.log.error(f"{name} records lost at exit: they could not be written",
                               count=records.pending, error=records.failing)  # fmt: skip
        self.log.info("daemon stopped", evaluations_dropped=len(self._dropped_at_stop))

    # ------------------------------------------------------------------------------ reload

    def request_reload(self) -> None:
        """Reload soon on the watcher's thread; only sets an event (what SIGHUP calls)."""
        if self.watcher is not None:
            self.watcher.request()

    def reload(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Load the rules file (default: the one the daemon started with) as `mlwatchdog check`
        does and apply what changed; False when it is invalid: the running config then stays.
        Safe from any thread (file watch, SIGHUP, HTTP): one reload at a time, the next waits."""
        file = Path(path) if path is not None else self.config_path
        if file is None:
            self.log.warning("config reload asked for, but the daemon was started without a file")
            return False
        with self._reload_lock:
            try:
                new = load_config(file)
                self.redactor.add(secret_values(new))  # before anything can print its values
                plan = plan_reload(self.config, new)
                issues, warnings = restart_needed(
                    plan.config,
                    str(file),
                    # A sink-only process never acts: what acting needs is not its concern.
                    kubernetes=self.sink_only or not isinstance(self.actuator, DryRunActuator),
                    elected=self.sink_only or self.elector is not None,
                    sink=self.sink is not None,
                    reviews=self.authenticator.review is not None,
                )
                if issues:
                    raise ConfigError(f"{file}: cannot apply without a restart", issues=issues)
                if not plan.empty:
                    self._apply(plan)
            except ConfigError as exc:
                issues = exc.issues or [ConfigIssue(str(file), None, "", str(exc))]
                self.reload_errors = [self.redactor.text(str(i)) for i in issues]
                self.metrics.config_failed()
                self.log.error("config reload failed", file=str(file), errors=self.reload_errors)
                for i in issues:
                    self.log.error(
                        "config error", file=i.file, line=i.line, key=i.path, error=i.message
                    )
                return False
            except Exception as exc:  # a bug: the running config stays, as for an invalid file
                self.reload_errors = [self.redactor.text(f"{file}: {type(exc).__name__}: {exc}")]
                self.metrics.config_failed()
                self.log.exception("config reload failed", file=str(file))
                return False
            self.reload_errors = []
            self.metrics.config_loaded(self.clock().timestamp(), reload=True)
            if plan.empty:
                self.log.info("config unchanged", file=str(file))
                return True
            for message in warnings:
                self.log.warning(message, file=str(file))
            for key in plan.restart_only:
                self.log.warning("config change needs a restart; running value kept", key=key)
            self.log.info(
                "config reloaded",
                file=str(file),
                added=list(plan.added),
                removed=list(plan.removed),
                changed=list(plan.changed),
                sources=list(plan.sources),
                settings=list(plan.settings),
                restart_only=list(plan.restart_only),
            )
            return True

    def _apply(self, plan: ReloadPlan) -> None:
        """Swap in the new config: everything that can fail is built before anything changes."""
        config, now = plan.config, self.clock()
        if self.sink_only:  # the sink checks events against the current targets; none run here
            self.redactor.add(secret_values(config))
            self.config = config
            return
        observer = Observer(config, previous=self.observer, on_set_aside=self.metrics.set_aside)
        fresh = {n: self._runner(config.target(n), observer) for n in plan.added}
        for target in config.targets:
            if target.name not in fresh:
                self.runners[target.name].rebind(target, observer)
        for name in plan.removed:
            self.runners[name].retire()
            with suppress(JobLookupError):
                self.scheduler.remove_job(name)
        self.runners = {t.name: fresh.get(t.name) or self.runners[t.name] for t in config.targets}
        # Old secrets stay scrubbed too: a rotated token is still somebody's secret.
        self.redactor.add(secret_values(config))
        self.config, self.observer = config, observer
        self.reports.observer = observer  # it reads references for reports
        for name in plan.added:
            self._schedule(config.target(name), now)
        for name in plan.rescheduled:  # keep the next run, unless the new interval comes sooner
            job = self.scheduler.get_job(name)
            soon = now + config.target(name).interval
            self._schedule(
                config.target(name), min(soon, job.next_run_time or soon) if job else now
            )
        self.publish_placement()  # added targets: evaluated here or not


def serve(
    config: Config,
    log: Any,
    host: str | None = None,
    port: int | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    redactor: Redactor | None = None,
    sink_only: bool = False,
) -> None:
    """Run the daemon and its HTTP server until SIGTERM or SIGINT. With `config_path` (the file
    `config` was loaded from), a changed file or SIGHUP reloads it. `sink_only`: the KServe
    sink alone (`Daemon`)."""
    exposed = exposed_without_auth(host or config.daemon.http.host, config.daemon.auth)
    if exposed:  # --host given on the command line: the same rule as in rules.yaml
        raise ConfigError(exposed.replace("daemon.http.host", "--host"))
    settings = config.daemon.http
    host, port = host or settings.host, settings.port if port is None else port
    sockets = listening_sockets(host, port)  # before anything starts: a port in use stops here
    try:
        _serve(config, log, host, port, sockets, config_path, redactor, sink_only)
    finally:
        for sock in sockets:
            sock.close()


def _serve(
    config: Config,
    log: Any,
    host: str,
    port: int,
    sockets: list[socket.socket],
    config_path: str | os.PathLike[str] | None,
    redactor: Redactor | None,
    sink_only: bool = False,
) -> None:
    daemon = Daemon(config, log, config_path=config_path, redactor=redactor, sink_only=sink_only)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(daemon),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            **uvicorn_options(config.daemon.http, log),  # daemon.http's limits on connections
        )
    )
    log.info("http listening", host=host, port=port)
    # uvicorn re-raises the SIGTERM it shut down on once it has stopped, so under the default
    # handler the process would die of the signal (exit -15, 143 in a shell) after a clean stop.
    # Under this handler the re-raise is harmless and SIGTERM exits 0; a SIGTERM that arrives
    # before uvicorn installs its own handler still stops the server.
    if threading.current_thread() is not threading.main_thread():
        server.run(sockets)  # no signals off the main thread (uvicorn installs none either)
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    hangup = signal.getsignal(signal.SIGHUP)
    if daemon.watcher is not None:  # a handler only sets an event; the watcher thread reloads
        signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    try:
        server.run(sockets)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, hangup)
