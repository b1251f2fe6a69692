"""POST /flagger/<hook> (each also /<secret>) for rollback, confirm-promotion, pre-rollout and
rollout: the webhooks a Flagger Canary calls, answered from the state of the target watching it;
`app.py` mounts them.

What Flagger does with the answer (fluxcd/flagger pkg/controller/webhook.go callWebhook: a status
above 202 is an error; pkg/controller/scheduler_hooks.go):
- `rollback` (runRollbackHooks, called each analysis run while the Canary is Progressing, Waiting
  or WaitingPromotion): 2xx rolls the canary back. We answer 200 while the target's incident is
  rolling back or being verified (the daemon decided a rollback, and not in dry-run); 403
  otherwise.
- `confirm-promotion` (runConfirmPromotionHooks, before the primary is replaced): 2xx promotes,
  anything else holds the Canary in WaitingPromotion. We answer 200 only while the target is
  healthy; 403 otherwise, and 503 before its first evaluation (hold, do not guess).
- `pre-rollout` (runPreRolloutHooks, before the canary gets traffic) and `rollout`
  (runAnalysis, every analysis interval): anything but 2xx halts the advancement and counts a
  failed check; `threshold` failed checks roll the canary back. We answer the verdict of
  `daemon/analysis.py` (the same as Argo's web metric gets): 200 pass, 403 fail, 503
  inconclusive (no data yet: a failed check, as Flagger counts its own metrics without values,
  "Halt advancement no values found"; never a pass).
403 for "no" is Flagger's own convention (pkg/loadtester/server.go, its gates). The body says the
target's state and why, in JSON. The payload is Flagger's CanaryWebhookPayload (name, namespace,
phase, checksum, metadata); the target is `metadata.target` when given, else the one whose
workload is this Canary (`kind: flagger-canary`).

Credentials are checked before the body is read (`auth.py`); Flagger cannot send headers, so a
per-Canary secret in the path (daemon.auth.flagger_paths) or Basic credentials in the URL's
user info (Go's http client sends them as an Authorization header) are how it proves itself. A
path secret answers for its own Canary only (403 for another).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from mlwatchdog.actions.workloads.flagger import WEBHOOK_PREFIX
from mlwatchdog.core import Phase
from mlwatchdog.core.verdict import Verdict
from mlwatchdog.daemon.analysis import analysis_answer
from mlwatchdog.daemon.auth import Principal

if TYPE_CHECKING:
    from mlwatchdog.daemon.runner import TargetRunner

HOOKS = ("rollback", "confirm-promotion", "pre-rollout", "rollout")
ANALYSIS_HOOKS = ("pre-rollout", "rollout")  # answered with the analysis verdict
YES, NO = 200, 403
VERDICT_STATUS = {Verdict.PASS: YES, Verdict.FAIL: NO, Verdict.INCONCLUSIVE: 503}


class CanaryWebhookPayload(BaseModel):
    """flaggerv1.CanaryWebhookPayload (pkg/apis/flagger/v1beta1/canary.go), as CallWebhook
    POSTs it."""

    name: str
    namespace: str
    phase: str = ""
    checksum: str = ""
    metadata: dict[str, str] = {}


def flagger_router(runners: Callable[[], Mapping[str, TargetRunner]], log: Any) -> APIRouter:
    """Flagger's webhook routes, answered from the current `runners()` (a reload applies)."""
    router = APIRouter()
    responses: dict[int | str, dict[str, Any]] = {
        NO: {"description": "no: do not roll back / hold the promotion (the body says why)"},
        404: {"description": "no target watches this Canary (Flagger: no / hold)"},
        503: {"description": "not evaluated yet, or inconclusive (Flagger: no / hold)"},
    }

    async def answer(hook: str, request: Request) -> JSONResponse:
        if hook not in HOOKS:
            return JSONResponse(
                {"detail": f"no Flagger webhook {hook!r} here: use one of {', '.join(HOOKS)}"},
                404,
            )
        try:
            payload = CanaryWebhookPayload.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError, ClientDisconnect) as exc:
            return JSONResponse(
                {"detail": f"not a Flagger webhook payload (name, namespace, phase): {exc}"}, 400
            )
        principal: Principal | None = (request.scope.get("state") or {}).get("principal")
        canary = (payload.namespace, payload.name)
        if principal is not None and principal.canary is not None and principal.canary != canary:
            ns, name = principal.canary
            return JSONResponse(
                {
                    "detail": f"this URL's secret is for Canary {ns}/{name}, not "
                    f"{payload.namespace}/{payload.name}: give each Canary its own "
                    "(daemon.auth.flagger_paths)"
                },
                403,
            )
        status, body = decide(hook, payload, runners())
        log.info(
            "flagger webhook answered",
            hook=hook,
            canary=f"{payload.namespace}/{payload.name}",
            canary_phase=payload.phase,
            target=body.get("target"),
            answer=status,
            reason=body["reason"],
        )
        return JSONResponse(body, status)

    for path in (f"{WEBHOOK_PREFIX}/{{hook}}", f"{WEBHOOK_PREFIX}/{{hook}}/{{secret}}"):
        router.add_api_route(
            path,
            answer,
            methods=["POST"],
            summary="Flagger webhook (rollback, confirm-promotion, pre-rollout, rollout): "
            "200 yes, 403 no",
            responses=responses,
            include_in_schema=not path.endswith("{secret}"),
        )
    return router


def decide(
    hook: str, payload: CanaryWebhookPayload, runners: Mapping[str, TargetRunner]
) -> tuple[int, dict[str, Any]]:
    """The status and body answering `hook` for the Canary of `payload`. Pure over the runners'
    current targets and states."""
    canary = f"{payload.namespace}/{payload.name}"
    runner = _runner_for(payload, runners)
    if runner is None:
        named = payload.metadata.get("target")
        why = (
            f"no target named {named!r} (the webhook's metadata.target)"
            if named
            else f"no target has workload {{kind: flagger-canary, name: {payload.name}, "
            f"namespace: {payload.namespace}}}; add one, or name the target in the webhook's "
            "metadata (target: <name>)"
        )
        return 404, {"canary": canary, "reason": why}
    target, state = runner.target, runner.state
    if hook in ANALYSIS_HOOKS:
        analysis = analysis_answer(runner, payload.metadata.get("revision"))
        return VERDICT_STATUS[Verdict(analysis.verdict)], {
            "canary": canary,
            **analysis.model_dump(mode="json"),
        }
    body: dict[str, Any] = {"canary": canary, "target": target.name}
    if state is None or state.evaluated_at is None:
        body.update(state=None, reason=f"target {target.name} has not been evaluated yet")
        return 503, body
    body["state"] = str(state.phase)
    if state.incident is not None:
        body["incident"] = state.incident.id
        body["reasons"] = list(state.incident.reasons)
    if hook == "rollback":
        acting = state.phase in (Phase.ROLLING_BACK, Phase.VERIFYING)
        if acting and target.rollback.enabled and target.rollback.dry_run:
            body["reason"] = (
                f"dry-run: target {target.name} would have Flagger roll back (it is "
                f"{state.phase}), but rollback.dry_run is true"
            )
            return NO, body
        if acting and target.rollback.enabled:
            body["reason"] = f"target {target.name} is {state.phase}: roll the canary back"
            return YES, body
        body["reason"] = f"target {target.name} is {state.phase}: no rollback called for"
        return NO, body
    if state.phase is Phase.HEALTHY:
        body["reason"] = f"target {target.name} is healthy: promote"
        return YES, body
    body["reason"] = f"target {target.name} is {state.phase}, not healthy: hold the promotion"
    return NO, body


def _runner_for(
    payload: CanaryWebhookPayload, runners: Mapping[str, TargetRunner]
) -> TargetRunner | None:
    named = payload.metadata.get("target")
    if named:
        return runners.get(named)
    for runner in runners.values():
        workload = runner.target.workload
        if (
            workload.kind == "flagger-canary"
            and workload.name == payload.name
            and workload.namespace == payload.namespace
        ):
            return runner
    return None
