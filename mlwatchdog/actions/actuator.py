"""The Kubernetes actuator: reads the workload, plans the revert, checks the policy, sends it (or
logs it, in dry-run), and records it: audit line, Kubernetes Event, LAST_ACTION annotation.

Called by the daemon's TargetRunner with a rollback decision; `health` is read while verifying.
Safety: only the leader (of the target's shard) sends; every write carries the resourceVersion it
was planned from, and a 409 re-reads and re-plans (the plan skips what is already done); 403 and
404 fail at once with what to fix; an unreachable API is tried a bounded number of times
(KubeApi), then the incident escalates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from mlwatchdog.actions import gitops
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.actions.plan import Plan, last_action, with_precondition
from mlwatchdog.actions.policy import refusal
from mlwatchdog.actions.workloads import Read, driver_for
from mlwatchdog.core import ActionOutcome, Decision, Health, WorkloadHealth
from mlwatchdog.errors import ActionError
from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import Revisions

CONFLICT_ATTEMPTS = 3


def utc_now() -> datetime:
    return datetime.now(UTC)


class KubeActuator:
    """Carries rollback decisions out on any workload kind, through that kind's driver."""

    def __init__(
        self,
        api: KubeApi,
        audit: AuditLog,
        log: Any,
        identity: str,
        leads: Callable[[str], bool] = lambda target: True,
        clock: Callable[[], datetime] = utc_now,
        server_dry_run: bool = True,
    ) -> None:
        self.api = api
        self.audit = audit
        self.log = log
        self.identity = identity
        self.leads = leads  # whether this replica leads the Lease of the target (by name)
        self.clock = clock
        self.server_dry_run = server_dry_run

    def rollback(self, target: Target, decision: Decision) -> ActionOutcome:
        if not self.leads(target.name):
            detail = "standby replica: the leader carries the rollback out; nothing sent from here"
            self.log.info("rollback left to the leader", target=target.name)
            return ActionOutcome(
                decision.incident, ok=True, dry_run=decision.dry_run, detail=detail, standby=True
            )
        record: dict[str, Any] = {
            "who": self.identity,
            "target": target.name,
            "workload": target.workload.model_dump(),
            "incident": decision.incident,
            "to": decision.to,
            "reasons": list(decision.reasons),
            "dry_run": decision.dry_run,
        }
        read: Read | None = None
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                read = self._read(target, decision)
                plan = self._plan(target, decision, read)
                return self._carry_out(target, decision, read, plan, record)
            except ActionError as exc:
                if exc.kind == "conflict" and attempt < CONFLICT_ATTEMPTS:
                    self.log.warning("conflict: re-reading and planning again", error=str(exc))
                    continue
                return self._failed(target, decision, read, record, exc)
        raise AssertionError("unreachable")

    def health(self, target: Target) -> WorkloadHealth | None:
        """The reverted workload's health now (UNKNOWN when it cannot be read)."""
        if target.workload.kind == "none":
            return None
        driver = driver_for(target.workload.kind)
        try:
            obj = self.api.get(driver.path(target))
        except ActionError as exc:
            return WorkloadHealth(Health.UNKNOWN, str(exc))
        return driver.health(obj)

    def read_last_action(self, target: Target) -> dict[str, Any] | None:
        """The LAST_ACTION note on the target's workload, parsed ({} when it has none); None when
        the target has no workload or it cannot be read. For a replica taking the target over
        without a state of its own (core/takeover.py)."""
        if target.workload.kind == "none":
            return None
        try:
            obj = self.api.get(driver_for(target.workload.kind).path(target))
        except ActionError as exc:
            self.log.warning("cannot read the workload's last action", error=str(exc))
            return None
        return last_action(obj)

    def serving(self, target: Target) -> Revisions | None:
        """The canary and stable revisions the workload serves now; None when no canary is in
        progress or the object cannot be read (then the window is judged whole, as before)."""
        if target.workload.kind == "none":
            return None
        try:
            return driver_for(target.workload.kind).serving(self.api, target)
        except ActionError as exc:
            self.log.warning("cannot read the serving revisions", error=str(exc))
            return None

    # ------------------------------------------------------------------------------- steps

    def _read(self, target: Target, decision: Decision) -> Read:
        return driver_for(target.workload.kind).read(self.api, target, decision, self.log)

    def _plan(self, target: Target, decision: Decision, read: Read) -> Plan:
        driver = driver_for(target.workload.kind)
        return driver.plan(read, target, decision, self.identity, self.clock())

    def _carry_out(
        self,
        target: Target,
        decision: Decision,
        read: Read,
        plan: Plan,
        record: dict[str, Any],
    ) -> ActionOutcome:
        record = {
            **record,
            "candidate": asdict(plan.candidate) if plan.candidate else None,
            "notes": list(plan.notes),
            "before": _strip(read.main),
        }
        if not plan.requests:
            self._audit(record, "skipped", plan.done)
            self.log.info("rollback already in place", target=target.name, detail=plan.done)
            return ActionOutcome(
                decision.incident, ok=True, dry_run=decision.dry_run, detail=plan.done
            )
        refused = refusal(target.rollback.policy, plan.candidate) if plan.candidate else ""
        if refused:
            self._audit(record, "refused", refused)
            self.log.warning("rollback refused by policy", target=target.name, reason=refused)
            if not decision.dry_run:
                self._event(read.main, "MlwatchdogRollbackRefused", refused, warning=True)
            return ActionOutcome(
                decision.incident, ok=False, dry_run=decision.dry_run, detail=refused, refused=True
            )
        # --- GitOps (issue 13, actions/gitops): Argo CD / Flux would undo a patch -------------
        step = gitops.intercept(self, target, decision, read, plan, record)
        if isinstance(step, ActionOutcome):
            return step  # refused (managed, no rollback.gitops), or the revert went to Git
        plan = step  # with the controller's sync paused first (pause-sync)
        # --- end GitOps -------------------------------------------------------------------------
        if decision.dry_run:
            return self._dry_run(target, decision, plan, record)
        sent = self._send(plan, target.name)
        after = self.api.get(driver_for(target.workload.kind).path(target))
        detail = "; ".join(f"{r['method']} {r['path']}: {r['purpose']}" for r in sent)
        self._audit({**record, "requests": sent, "after": _strip(after)}, "sent", detail)
        why = "; ".join(decision.reasons)[:600]
        self._event(after, "MlwatchdogRollback", f"reverted to {decision.to}: {why}", warning=False)
        self.log.warning("rollback sent", target=target.name, requests=len(sent))
        return ActionOutcome(decision.incident, ok=True, dry_run=False, detail=detail)

    def _dry_run(
        self, target: Target, decision: Decision, plan: Plan, record: dict[str, Any]
    ) -> ActionOutcome:
        """Log the plan's requests and, with `server_dry_run`, send them with dryRun=All: the
        API server admits, validates and authorizes each as it would for real and stores
        nothing, so a refusal (RBAC, admission, schema) shows now, not during an incident."""
        requests = [_request_record(r, with_precondition(r)) for r in plan.requests]
        for request in requests:
            self.log.warning("dry-run rollback: would send", target=target.name, **request)
        if not self.server_dry_run:
            detail = f"dry-run: {len(requests)} request(s) logged, none sent"
            self._audit({**record, "requests": requests}, "dry_run", detail)
            return ActionOutcome(decision.incident, ok=True, dry_run=True, detail=detail)
        try:
            answered = self._send(plan, target.name, dry_run=True)
        except ActionError as exc:
            if exc.kind == "conflict":
                raise  # the object changed since it was read: re-read and plan again
            detail = f"dry-run refused by the API server: {exc}"
            self._audit({**record, "requests": requests}, "dry_run_refused", detail)
            self.log.error("server dry-run refused the rollback", target=target.name, error=detail)
            return ActionOutcome(decision.incident, ok=False, dry_run=True, detail=detail)
        detail = (
            f"dry-run: {len(answered)} request(s) accepted by the API server with dryRun=All, "
            "nothing changed"
        )
        self._audit({**record, "requests": answered}, "dry_run", detail)
        return ActionOutcome(decision.incident, ok=True, dry_run=True, detail=detail)

    def _send(self, plan: Plan, target: str, dry_run: bool = False) -> list[dict[str, Any]]:
        """Send the plan's requests in order; a later request on an object written earlier in
        the plan carries the resourceVersion that write returned. With `dry_run`, nothing is
        stored, so every request carries the resourceVersion the plan was made from, and each
        record keeps what the server would have stored (`server_answer`)."""
        latest: dict[str, str] = {}
        sent: list[dict[str, Any]] = []
        for request in plan.requests:
            if not dry_run and not self.leads(target):
                raise ActionError(
                    "lost the leader Lease while acting: the revert may be partial "
                    f"({len(sent)} of {len(plan.requests)} requests sent); check the object"
                )
            base = request.path.removesuffix("/status")
            request = replace(request, precondition=latest.get(base, request.precondition))
            body = with_precondition(request)
            try:
                response = self.api.patch(request.path, body, request.content_type, dry_run)
            except ActionError as exc:
                if not (exc.status == 404 and request.path.endswith("/status")):
                    raise
                # No status subresource in this cluster's CRD: the status lives in the object.
                response = self.api.patch(base, body, request.content_type, dry_run)
                request = replace(request, path=base)
            if dry_run:
                sent.append({**_request_record(request, body), "server_answer": _strip(response)})
                continue
            latest[base] = response["metadata"]["resourceVersion"]
            sent.append(
                {**_request_record(request, body), "response_resource_version": latest[base]}
            )
        return sent

    def _failed(
        self,
        target: Target,
        decision: Decision,
        read: Read | None,
        record: dict[str, Any],
        exc: ActionError,
    ) -> ActionOutcome:
        detail = str(exc)
        self._audit({**record, "before": _strip(read.main) if read else None}, "failed", detail)
        self.log.error("rollback failed", target=target.name, error=detail, kind=exc.kind)
        if read is not None and exc.kind != "temporary" and not decision.dry_run:
            self._event(read.main, "MlwatchdogRollbackFailed", detail, warning=True)
        return ActionOutcome(decision.incident, ok=False, dry_run=decision.dry_run, detail=detail)

    # ------------------------------------------------------------------------------ records

    def _audit(self, record: dict[str, Any], result: str, detail: str) -> None:
        self.audit.append(
            {"at": self.clock().isoformat(), **record, "result": result, "detail": detail}
        )

    def _event(self, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        """A Kubernetes Event on the object; best effort (one attempt, failures only logged)."""
        meta = obj["metadata"]
        now = self.clock()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{int(now.timestamp() * 1e6):x}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "mlwatchdog"},
            "reportingComponent": "mlwatchdog",
            "reportingInstance": self.identity,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.api.request(
                "POST", f"/api/v1/namespaces/{meta['namespace']}/events", event,
                "application/json", attempts=1,
            )  # fmt: skip
        except ActionError as exc:
            self.log.warning("could not record a Kubernetes Event", error=str(exc))


def _request_record(request: Any, body: Any) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "content_type": request.content_type,
        "body": body,
        "purpose": request.purpose,
    }


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the audit log keeps it: without managedFields (noise, and large)."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}
