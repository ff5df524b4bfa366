"""The generation phase's durable steps: start (or resume) a task, recall what memory holds
for it, and write an attempt on the tiers the router plans (or ask a person for it).

A tier is tried only when policy allows it, its budgets can take the call's worst case and its
circuit is closed; each tier's call is retried as the router's ``RetryPolicy`` says, and a
failure falls back to the next tier (``generate.TierWalk``). Every step is safe to run again
after a crash: the attempt row is upserted by (task, number).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import select

from shipyard._crash import crashpoint
from shipyard.errors import MalformedReply, ShipyardError
from shipyard.generate import (
    FREE_PROVIDERS,
    Admission,
    Generation,
    GenerationRequest,
    Limit,
    Plan,
    Spend,
    TierWalk,
    call_with_retries,
    price_call,
    prompt_hash,
    render_prompt,
)
from shipyard.jobs import JobKind, is_repo_change, validate_inputs
from shipyard.memory import recall_for_task
from shipyard.model import CheckReport, CheckResult, DecisionKind, Finding, TaskState
from shipyard.observe import PROMPT_EVENT, REPLY_EVENT, request_attributes, response_attributes
from shipyard.orchestrator import _change as change
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator import _notify as notify
from shipyard.orchestrator._ledger import drop_hold, hold, limits_for, rates_for, spend
from shipyard.orchestrator._names import RunPlan
from shipyard.orchestrator._ratelimit import take_slot
from shipyard.orchestrator._runtime import Runtime, current_runtime
from shipyard.orchestrator._stage import _now, _task, stage, step
from shipyard.policy import Request
from shipyard.store import AttemptRow, DecisionRow, set_task_state, transaction

__all__ = ["escalate_step", "generate_step", "recall_step", "resume_step", "start_step"]


@step("shipyard.start")
def start_step(task_id: str) -> RunPlan:
    """Re-validate the inputs (the job kind may have changed since submit) and mark running."""
    rt = current_runtime()
    with stage(rt, task_id, "validate") as record:
        with transaction(rt.sessions) as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            validate_inputs(kind, task.inputs, where=f"task {task_id}")
            set_task_state(session, task_id, TaskState.RUNNING)
        record["summary"] = f"inputs fit the {kind.name} schema"
    return {
        "job_kind": kind.name,
        "max_attempts": kind.max_attempts,
        "on_exhausted": kind.on_exhausted,
        "attempt": 1,
        "verify_first": False,
    }


@step("shipyard.resume")
def resume_step(task_id: str) -> RunPlan:
    """Where a resumed task goes on: checking a person's code, or the next generation."""
    rt = current_runtime()
    with transaction(rt.sessions) as session:
        task = _task(session, task_id)
        kind = rt.jobs.get(task.job_kind)
        last = session.scalar(
            select(AttemptRow)
            .where(AttemptRow.task_id == task_id)
            .order_by(AttemptRow.number.desc())
            .limit(1)
        )
        set_task_state(session, task_id, TaskState.RUNNING)
    if last is None:
        attempt, verify_first = 1, False
    elif last.passed is None and last.files:
        attempt, verify_first = last.number, True  # a person supplied it: check it
    elif last.passed is None:
        raise ShipyardError(f"task {task_id}: attempt {last.number} still waits for its code")
    else:
        attempt, verify_first = last.number + 1, False
    return {
        "job_kind": kind.name,
        "max_attempts": kind.max_attempts,
        "on_exhausted": kind.on_exhausted,
        "attempt": attempt,
        "verify_first": verify_first,
    }


@step("shipyard.recall")
def recall_step(task_id: str, at: int = 0) -> list[dict[str, Any]]:
    rt = current_runtime()
    with stage(rt, task_id, "recall", at) as record:
        with rt.sessions() as session:
            items = recall_for_task(session, rt.memory, rt.project.settings, task_id)
        semantic = sum(1 for item in items if "similarity" in item)
        record["summary"] = (
            f"{len(items)} item(s) recalled ({semantic} by meaning and words, "
            f"{len(items) - semantic} from the records)"
        )
        record["items"] = [item["id"] for item in items]
    return items


@step("shipyard.generate")
def generate_step(task_id: str, attempt: int, recalled: list[dict[str, Any]]) -> str:
    """One generation: the prompt (with the previous attempt's findings), then the router.

    Returns ``generated``; or ``waiting_input`` when no tier could serve and a person is
    asked for the code; or ``paused`` when budgets alone stood in the way. A reply that does
    not hold the job kind's files is a failed attempt (its report says why), not a failed
    task: the repair loop asks again.
    """
    rt = current_runtime()
    with stage(rt, task_id, "generate", attempt) as record:
        request = _generation_request(rt, task_id, attempt, recalled)
        change_record: dict[str, Any] | None = None
        if is_repo_change(request.kind):
            request, change_record = change.generation_request(
                rt, request, recalled=recalled, feedback=request.feedback
            )
        plan, limits = _plan(rt, request)
        notes = list(plan.notes)
        walked = _walk(rt, request, limits).run(
            plan.tiers,
            lambda tier: _generate_on(rt, tier, request, notes, change_record),
            notes,
        )
        if walked.result is None:
            if walked.paused:
                budgets = [n for n in notes if " budget " in n]
                _pause(
                    rt,
                    request,
                    ["paused: every tier that could serve would break a budget", *budgets, *notes],
                )
                record["summary"] = "paused: " + budgets[0]
                return TaskState.PAUSED.value
            if plan.tiers:
                notes.append("no tier could serve: a person is asked for the code")
            _ask_person(rt, request, notes, escalated=False)
            record["summary"] = "waiting for a person to supply the code"
            return TaskState.WAITING_INPUT.value
        tier, (generation, report) = walked.tier, walked.result
        notes.append(f"{tier} served" + (" (malformed reply)" if report else ""))
        _store_attempt(
            rt, request, generation, report, tier=tier, route=notes, change_record=change_record
        )
        record["summary"] = (
            f"{tier}: {generation.provider} ({generation.model}): "
            + (_produced(request, generation) if report is None else "failed: " + _why(report))
            + (f", {len(request.feedback)} finding(s) fed back" if request.feedback else "")
        )
        record["tier"], record["route"] = tier, notes
        record["provider"], record["model"] = generation.provider, generation.model
        record["tokens"] = [generation.input_tokens, generation.output_tokens]
    return "generated"


def _walk(rt: Runtime, request: GenerationRequest, limits: list[Limit]) -> TierWalk:
    """This attempt's walk over the tiers: policy and the budgets' estimate admit a tier, the
    router's breaker lets the call through, a budget hold reserves its worst case, and the
    tier's calls-per-minute window is waited for just before calling."""

    def allowed(tier: str) -> Admission | None:
        verdict = rt.policies.authorize(_generate_request(rt, request, tier, limits))
        if verdict.allowed:
            return None
        return Admission(reason=f"{tier} denied by policy: {verdict.reason()}")

    def affordable(tier: str) -> Admission | None:
        reason = rt.router.over_budget(tier, request.prompt, limits)
        return Admission(reason=reason, budget=True) if reason else None

    def held(tier: str) -> Admission | None:
        reason = _hold_budget(rt, request, tier)
        return Admission(reason=f"{tier} skipped: {reason}", budget=True) if reason else None

    return TierWalk(
        rt.router.breaker,
        admit=[allowed, affordable],
        reserve=[held],
        undo=lambda tier: _drop_hold(rt, request),
    )


def _hold_key(request: GenerationRequest) -> str:
    return f"{request.task_id}:{request.attempt}"


def _hold_budget(rt: Runtime, request: GenerationRequest, tier: str) -> str:
    """Set the call's worst case aside against the budgets; why not ('' when held)."""
    call = rt.router.estimate(tier, request.prompt)
    if not (call.usd or call.tokens):
        return ""
    settings = rt.project.settings
    tier_settings = settings.tiers[tier]
    tries = settings.generate.tries_per_call
    return hold(
        rt.sessions,
        settings,
        request.task_id,
        _hold_key(request),
        call,
        seconds=tries * (tier_settings.timeout_seconds + 60.0),  # every try and its backoff
        leases=rt.budget_leases,
    )


def _drop_hold(rt: Runtime, request: GenerationRequest) -> None:
    with transaction(rt.sessions) as session:
        drop_hold(session, _hold_key(request))
    if rt.budget_leases is not None:
        rt.budget_leases.drop(_hold_key(request))


def _take_rate_slot(rt: Runtime, tier: str) -> float:
    """Wait for the tier's calls-per-minute window (shared by every worker); seconds waited."""
    settings = rt.project.settings.tiers[tier]
    if settings.calls_per_minute is None or settings.provider in FREE_PROVIDERS:
        return 0.0
    return take_slot(rt.sessions, settings.rate_key or tier, settings.calls_per_minute)


def _generate_request(
    rt: Runtime, request: GenerationRequest, tier: str, limits: list[Limit]
) -> Request:
    task_spend = next((limit.spent for limit in limits if limit.scope.startswith("task ")), None)
    if task_spend is None:
        with rt.sessions() as session:
            task_spend = spend(session, task_id=request.task_id)
    context = {
        "tier": tier,
        "provider": rt.project.settings.tiers[tier].provider,
        "attempt": request.attempt,
        "cost_microusd": int(task_spend.usd * 1_000_000),
    }
    return govern.agent_request(
        request.kind.domain, "generate", govern.job_kind(request.kind), context
    )


@step("shipyard.escalate")
def escalate_step(task_id: str, attempt: int, recalled: list[dict[str, Any]]) -> str:
    """Every repair failed: ask a person for the code rather than give up or act anyway."""
    rt = current_runtime()
    with stage(rt, task_id, "generate", attempt) as record:
        request = _generation_request(rt, task_id, attempt, recalled)
        note = (
            f"{attempt - 1} attempt(s) failed their checks; the job kind escalates "
            "(on_exhausted = person): a person is asked for the code"
        )
        _ask_person(rt, request, [note], escalated=True)
        record["summary"] = "escalated: waiting for a person to supply the code"
    return TaskState.WAITING_INPUT.value


def _plan(rt: Runtime, request: GenerationRequest) -> tuple[Plan, list[Limit]]:
    """The router's plan for this attempt, and the budgets its calls must fit."""
    settings = rt.project.settings
    chosen = str(request.inputs.get("tier") or "") if is_repo_change(request.kind) else ""
    requested = chosen or request.kind.tier or settings.generate.tier
    with rt.sessions() as session:
        task = _task(session, request.task_id)
        previous = session.scalar(
            select(AttemptRow).where(
                AttemptRow.task_id == request.task_id, AttemptRow.number == request.attempt - 1
            )
        )
        failed_tier = previous.tier if previous is not None and previous.passed is False else ""
        rates = (
            rates_for(
                session, task.job_kind, rt.router.chain, window=settings.generate.success_window
            )
            if requested == "auto"
            else {}
        )
        limits = limits_for(session, settings, task, leases=rt.budget_leases)
    plan = rt.router.plan(
        requested, job_kind=request.kind.name, failed_tier=failed_tier, rates=rates
    )
    return plan, limits


def _generate_on(
    rt: Runtime,
    tier: str,
    request: GenerationRequest,
    notes: list[str],
    change_record: dict[str, Any] | None = None,
) -> tuple[Generation, CheckReport | None]:
    """The tier's generation, or a failed one with a report when the reply was malformed.

    For a repository change (``change_record`` given), the generation's files are the change
    it made to a clean copy, and the record gets the change's summary."""
    waited = _take_rate_slot(rt, tier)
    if waited:
        notes.append(f"{tier}: waited {waited:.1f} s for its calls-per-minute limit")
    settings = rt.project.settings.tiers[tier]
    model_call = settings.provider not in FREE_PROVIDERS
    attributes: dict[str, Any] = {"shipyard.tier": tier, "shipyard.provider": settings.provider}
    if model_call:
        attributes |= request_attributes(
            provider=settings.provider,
            model=settings.model,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
        )
    name = f"chat {settings.model}" if model_call else f"{settings.provider} {tier}"
    with rt.tracing.span(
        request.task_id, name, attributes=attributes, kind=SpanKind.CLIENT
    ) as span:
        rt.tracing.content(span, PROMPT_EVENT, request.prompt)
        try:
            if change_record is None:
                generation = call_with_retries(rt.provider(tier), request, rt.router.retry)
                _check_outputs(request.kind, generation.files)
                report = None
            else:
                copy = change.reset_copy(rt, request)
                generation = call_with_retries(rt.provider(tier), request, rt.router.retry)
                collected = change.collect(rt, request, generation, copy)
                crashpoint("generate.change_made")  # a fault drill: made, not yet recorded
                generation = dataclasses.replace(generation, files=collected.files)
                change_record["summary"] = collected.summary
                report = collected.report
        except MalformedReply as exc:
            finding = Finding(rule="generate.malformed", message=exc.message)
            report = CheckReport(
                results=(CheckResult(check="reply", passed=False, findings=(finding,)),)
            )
            generation = _failed_generation(exc)
            span.set_attribute("error.type", "malformed_reply")
            span.set_status(Status(StatusCode.ERROR, exc.message[:200]))
        if model_call:
            span.set_attributes(
                response_attributes(
                    model=generation.model,
                    input_tokens=generation.input_tokens,
                    output_tokens=generation.output_tokens,
                    finish_reason=generation.finish_reason,
                )
            )
            rt.tracing.content(span, REPLY_EVENT, generation.reply)
        return generation, report


def _pause(rt: Runtime, request: GenerationRequest, notes: list[str]) -> None:
    with transaction(rt.sessions) as session:
        set_task_state(session, request.task_id, TaskState.PAUSED, error="\n".join(notes))
        resumed = session.scalars(  # a task resumed and paused again is a new pause
            select(DecisionRow.id).where(
                DecisionRow.task_id == request.task_id,
                DecisionRow.decision == DecisionKind.RESUMED,
            )
        ).all()
        notify.task_event(
            rt,
            session,
            _task(session, request.task_id),
            type=notify.BUDGET_PAUSED,
            key=f"{request.task_id}:budget.paused:{request.attempt}:{len(resumed)}",
            reason=notes[0],
            budgets=[n for n in notes if " budget " in n],
            attempt=request.attempt,
        )
        govern.record(
            session,
            actor=f"agent {request.kind.domain}",
            action="generate",
            subject=govern.job_kind(request.kind),
            decision="paused",
            reason="; ".join(notes),
            task_id=request.task_id,
            detail={"attempt": request.attempt},
        )


def _ask_person(
    rt: Runtime, request: GenerationRequest, notes: list[str], *, escalated: bool
) -> None:
    """Record the attempt as the human tier's, without files, and wait for `shipyard provide`.

    The notification says a person is needed: an escalation when every repair failed,
    otherwise (no tier could serve) a person's code is simply what the task needs next.
    """
    waiting = Generation(files={}, provider="human", model="")
    _store_attempt(rt, request, waiting, None, tier="human", route=notes)
    with transaction(rt.sessions) as session:
        set_task_state(session, request.task_id, TaskState.WAITING_INPUT)
        kind = "escalated" if escalated else "needed"
        notify.task_event(
            rt,
            session,
            _task(session, request.task_id),
            type=notify.APPROVAL_ESCALATED if escalated else notify.APPROVAL_NEEDED,
            key=f"{request.task_id}:approval.{kind}:code:{request.attempt}",
            waiting_for="code",
            reason="; ".join(notes),
            attempt=request.attempt,
        )


def _generation_request(
    rt: Runtime, task_id: str, attempt: int, recalled: list[dict[str, Any]]
) -> GenerationRequest:
    with rt.sessions() as session:
        task = _task(session, task_id)
        previous = session.scalar(
            select(AttemptRow).where(
                AttemptRow.task_id == task_id, AttemptRow.number == attempt - 1
            )
        )
        inputs = dict(task.inputs)
        kind = rt.jobs.get(task.job_kind)
    feedback = (
        CheckReport.from_dict(previous.report).findings
        if previous is not None and previous.report
        else []
    )
    previous_files = dict(previous.files) if previous is not None else {}
    prompt = (
        ""  # a repository change's prompt is built on its working copy (``_change``)
        if is_repo_change(kind)
        else render_prompt(
            kind, inputs, recalled=recalled, feedback=feedback, previous_files=previous_files
        )
    )
    return GenerationRequest(
        task_id=task_id,
        kind=kind,
        inputs=inputs,
        attempt=attempt,
        prompt=prompt,
        previous_files=previous_files,
        feedback=tuple(feedback),
        recalled=tuple(recalled),
    )


def _failed_generation(exc: MalformedReply) -> Generation:
    """What a provider reported with a malformed reply (the tokens were spent all the same)."""
    details = exc.details
    return Generation(
        files={},
        provider=str(details.get("provider", "")),
        model=str(details.get("model", "")),
        input_tokens=int(details.get("input_tokens", 0)),
        output_tokens=int(details.get("output_tokens", 0)),
        reply=str(details.get("reply", "")),
        finish_reason=str(details.get("finish_reason", "")),
    )


def _store_attempt(
    rt: Runtime,
    request: GenerationRequest,
    generation: Generation,
    report: CheckReport | None,
    *,
    tier: str,
    route: list[str],
    change_record: dict[str, Any] | None = None,
) -> None:
    key, leases = _hold_key(request), rt.budget_leases
    leased = leases is not None and leases.holding(key)
    with transaction(rt.sessions) as session:
        row = session.scalar(
            select(AttemptRow).where(
                AttemptRow.task_id == request.task_id, AttemptRow.number == request.attempt
            )
        )
        if row is None:
            row = AttemptRow(task_id=request.task_id, number=request.attempt)
            session.add(row)
        row.tier, row.route = tier, "\n".join(route)
        # Model names and stop reasons come from a server: keep them within their columns.
        row.provider, row.model = generation.provider, generation.model[:200]
        row.prompt, row.prompt_hash = request.prompt, prompt_hash(request.prompt)
        row.files = generation.files
        row.reply, row.finish_reason = generation.reply, generation.finish_reason[:32]
        row.input_tokens, row.output_tokens = generation.input_tokens, generation.output_tokens
        cost = price_call(
            provider=generation.provider,
            model=generation.model,
            input_tokens=generation.input_tokens,
            output_tokens=generation.output_tokens,
            overrides=rt.project.settings.prices,
        )
        row.cost_usd, row.cost_source = cost.usd, cost.source
        # The day budgets' leases this call was held under: their reserve shrinks by this.
        row.budget_lease = leases.owner if leases is not None and leased else ""
        row.feedback = [f.to_dict() for f in request.feedback]
        row.recalled = [item["id"] for item in request.recalled]
        row.change = change_record
        row.generated_at = _now()
        row.report = report.to_dict() if report is not None else None
        row.passed = False if report is not None else None
        row.checked_at = _now() if report is not None else None
        _task(session, request.task_id).attempts = request.attempt
        drop_hold(session, key)  # the attempt now carries the real spend
        govern.record(
            session,
            actor=f"agent {request.kind.domain}",
            action="generate",
            subject=govern.job_kind(request.kind),
            decision=tier,
            reason="; ".join(route),
            task_id=request.task_id,
            detail={
                "attempt": request.attempt,
                "provider": generation.provider,
                "model": row.model,
                "tokens": [generation.input_tokens, generation.output_tokens],
                "cost_usd": str(cost.usd),
            },
        )
    if leased and leases is not None:
        spent = Spend(usd=cost.usd, tokens=generation.input_tokens + generation.output_tokens)
        leases.settle(key, spent)


def _produced(request: GenerationRequest, generation: Generation) -> str:
    if not is_repo_change(request.kind):
        return f"{len(generation.files)} file(s)"
    summary = json.loads(generation.files.get("change.json", "{}"))
    return (
        f"{len(summary.get('files', []))} file(s) changed, +{summary.get('lines_added', 0)} "
        f"-{summary.get('lines_removed', 0)}"
    )


def _why(report: CheckReport) -> str:
    first = report.findings[0].message.splitlines()[0] if report.findings else "no findings"
    return f"{len(report.findings)} finding(s); first: {first[:160]}"


def _check_outputs(kind: JobKind, files: dict[str, str]) -> None:
    expected, got = set(kind.outputs), set(files)
    if expected != got:
        raise MalformedReply(
            f"the generator returned files {sorted(got)}, the job kind wants {sorted(expected)}",
            hint="a provider must produce exactly the job kind's outputs",
        )
