"""A person in the loop over HTTP: pause, resume, silence and unsilence a target; approve or
reject a rollback waiting for approval (rollback.confirm). Each needs the `operate` role
(`daemon.auth`), is applied between evaluations by the target's runner (saved, audited,
journalled, exported: `TargetRunner.operate`), and answers with the target's controls.

Only the replica that acts (the Lease holder) takes these commands: another replica answers 409,
since what it recorded would not stop or start the leader's actions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlwatchdog.core import Hold, Phase, TargetState, to_json
from mlwatchdog.core.people import NotCurrent, answer, pause, resume, silence, unsilence
from mlwatchdog.daemon.runner import NotCurrentTarget
from mlwatchdog.rules.schema import Duration, format_duration, parse_duration

LONGEST = timedelta(days=366)  # a pause or silence longer than this is a mistake (or overflow)


def _bounded(value: Any) -> Any:
    """A pause's or silence's length: positive, at most LONGEST (refused with 422, not 500)."""
    if value is None:
        return None
    try:
        length = parse_duration(value)
    except OverflowError:
        raise ValueError(f"at most {format_duration(LONGEST)}") from None
    if length <= timedelta(0) or length > LONGEST:
        raise ValueError(f"must be positive and at most {format_duration(LONGEST)}")
    return length


if TYPE_CHECKING:
    from mlwatchdog.daemon.runner import TargetRunner
    from mlwatchdog.daemon.service import Daemon


class HoldView(BaseModel):
    """A pause or a silence: who set it, when, why, and until when (None: until resumed)."""

    by: str
    at: datetime
    until: datetime | None
    reason: str


class ApprovalView(BaseModel):
    """A rollback waiting for a person (rollback.confirm), or the answer it got."""

    incident: str
    asked_at: datetime
    deadline: datetime
    waiting: bool  # still waiting for an answer (the target is awaiting_approval, unanswered)
    answer: str | None  # approved, rejected; None while waiting
    by: str | None
    answered_at: datetime | None
    reason: str
    reasons: list[str]  # why the rollback was decided


def people_fields(state: TargetState | None) -> dict[str, Any]:
    """The `paused`, `silenced` and `approval` fields of a target's API view."""
    if state is None:
        return {"paused": None, "silenced": None, "approval": None}
    incident = state.incident
    asked = incident.confirmation if incident is not None else None
    approval = None
    if incident is not None and asked is not None:
        approval = ApprovalView(
            incident=incident.id,
            asked_at=asked.asked_at,
            deadline=asked.deadline,
            waiting=state.phase is Phase.AWAITING_APPROVAL and asked.answer is None,
            answer=str(asked.answer) if asked.answer else None,
            by=asked.by,
            answered_at=asked.answered_at,
            reason=asked.note,
            reasons=list(asked.reasons),
        )
    return {
        "paused": _hold(state.paused),
        "silenced": _hold(state.silenced),
        "approval": approval,
    }


def _hold(hold: Hold | None) -> HoldView | None:
    if hold is None:
        return None
    return HoldView(by=hold.by, at=hold.at, until=hold.until, reason=hold.reason)


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = Field("", max_length=1000)
    for_: Duration | None = Field(
        None, alias="for", description="how long, e.g. '2h' (default: until resumed)"
    )

    _length = field_validator("for_", mode="before")(_bounded)


class SilenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = Field("", max_length=1000)
    for_: Duration = Field(alias="for", description="how long, e.g. '1h': a silence always ends")

    _length = field_validator("for_", mode="before")(_bounded)


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=1000)


class PersonResult(BaseModel):
    """What a person's command left: the target's phase, incident and controls."""

    target: str
    phase: str | None
    incident: str | None
    paused: HoldView | None
    silenced: HoldView | None
    approval: ApprovalView | None
    decisions: list[dict[str, Any]]  # of the evaluation run right after (approve, reject, resume)
    message: str


def people_router(daemon: Daemon) -> APIRouter:
    router = APIRouter()

    def runner_of(name: str) -> TargetRunner:
        runner = daemon.runners.get(name)
        if runner is None:
            raise HTTPException(404, f"no target {name!r}; targets: {sorted(daemon.runners)}")
        return runner

    def acting_replica(target: str) -> None:
        elector = daemon.elector
        if elector is not None and not elector.leads(target):
            raise HTTPException(
                409,
                "this replica is not the leader (the Lease holder acts, and takes pauses, "
                "silences and approvals): send this to the leader"
                + (" of the target's shard (GET /api/v1/status)" if elector.shards > 1 else ""),
            )

    def apply(
        runner: TargetRunner,
        what: str,
        request: Request,
        change: Callable[[TargetState, datetime], TargetState],
        message: str,
        *,
        evaluate: bool = False,
        **details: Any,
    ) -> PersonResult:
        acting_replica(runner.target.name)
        by = who(request)
        try:
            runner.operate(what, by, change, **details)
        except (NotCurrent, NotCurrentTarget) as exc:
            raise HTTPException(409, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except OSError as exc:
            raise HTTPException(503, f"the target's state could not be saved: {exc}") from None
        decisions: list[dict[str, Any]] = []
        if evaluate:  # act on it now rather than at the next scheduled evaluation
            evaluation = runner.run_once()
            if evaluation is not None:
                decisions = [to_json(d) for d in evaluation.decisions]
        state = runner.state
        phase = str(state.phase) if state else None
        return PersonResult(
            target=runner.target.name,
            phase=phase,
            incident=state.incident.id if state and state.incident else None,
            decisions=decisions,
            message=f"{message}; the target is {phase or 'not evaluated yet'}",
            **people_fields(state),
        )

    @router.post("/api/v1/targets/{name}/pause", summary="Pause a target's actions")
    def pause_target(name: str, request: Request, body: PauseRequest | None = None) -> PersonResult:
        body = body or PauseRequest()
        runner, how_long, reason = runner_of(name), body.for_, body.reason

        def change(state: TargetState, now: datetime) -> TargetState:
            return pause(state, who(request), now, now + how_long if how_long else None, reason)

        until = f"for {format_duration(body.for_)}" if body.for_ else "until resumed"
        return apply(
            runner, "paused", request, change, f"{name} paused {until}: evaluated, no action",
            reason=body.reason, duration=body.for_.total_seconds() if body.for_ else None,
        )  # fmt: skip

    @router.post("/api/v1/targets/{name}/resume", summary="End a target's pause")
    def resume_target(name: str, request: Request, body: NoteRequest | None = None) -> PersonResult:
        body = body or NoteRequest()
        return apply(
            runner_of(name), "resumed", request, lambda state, _: resume(state),
            f"{name} resumed: it acts again", evaluate=True, reason=body.reason,
        )  # fmt: skip

    @router.post("/api/v1/targets/{name}/silence", summary="Silence a target for a while")
    def silence_target(name: str, request: Request, body: SilenceRequest) -> PersonResult:
        def change(state: TargetState, now: datetime) -> TargetState:
            return silence(state, who(request), now, now + body.for_, body.reason)

        return apply(
            runner_of(name), "silenced", request, change,
            f"{name} silenced for {format_duration(body.for_)}: no action, no escalation",
            reason=body.reason, duration=body.for_.total_seconds(),
        )  # fmt: skip

    @router.post("/api/v1/targets/{name}/unsilence", summary="End a target's silence early")
    def unsilence_target(
        name: str, request: Request, body: NoteRequest | None = None
    ) -> PersonResult:
        body = body or NoteRequest()
        return apply(
            runner_of(name), "unsilenced", request, lambda state, _: unsilence(state),
            f"{name}'s silence ended", evaluate=True, reason=body.reason,
        )  # fmt: skip

    def answer_incident(
        incident: str, request: Request, approved: bool, body: NoteRequest | None
    ) -> PersonResult:
        note = (body or NoteRequest()).reason
        runner = next(
            (
                r
                for r in daemon.runners.values()
                if r.state is not None and r.state.incident and r.state.incident.id == incident
            ),
            None,
        )
        if runner is None:
            current = {
                n: r.state.incident.id
                for n, r in daemon.runners.items()
                if r.state is not None and r.state.incident
            }
            raise HTTPException(
                409,
                f"incident {incident!r} is not current: no target has it open "
                f"(open incidents: {current or 'none'})",
            )

        def change(state: TargetState, now: datetime) -> TargetState:
            return answer(state, incident, approved, who(request), now, note)

        verb = "approved" if approved else "rejected"
        return apply(
            runner, verb, request, change, f"{incident} {verb}",
            evaluate=True, reason=note,
        )  # fmt: skip

    @router.post(
        "/api/v1/incidents/{incident}/approve", summary="Approve a rollback waiting for approval"
    )
    def approve(incident: str, request: Request, body: NoteRequest | None = None) -> PersonResult:
        return answer_incident(incident, request, True, body)

    @router.post(
        "/api/v1/incidents/{incident}/reject", summary="Reject a rollback waiting for approval"
    )
    def reject(incident: str, request: Request, body: NoteRequest | None = None) -> PersonResult:
        return answer_incident(incident, request, False, body)

    return router


def who(request: Request) -> str:
    """The authenticated caller (AuthMiddleware's principal), else 'anonymous'."""
    principal = request.scope.get("state", {}).get("principal")
    return str(getattr(principal, "name", "anonymous"))
