"""The task pipeline as durable DBOS workflows; each stage is a durable step.

    shipyard.task:      validate -> recall -> (generate -> verify)* -> register -> gate
                        -> [auto] release -> remember
    shipyard.decision:  (after a person approves or rejects) approval -> release -> remember
    shipyard.rollout:   (a release with a rollout plan) deploy -> stages -> promote or
                        roll back -> remember; started by either, outside the queue

A task that waits for a person holds no worker and no queue slot: the first workflow ends at
the gate with the task in ``waiting_approval``, and ``shipyard approve`` / ``reject``
enqueues the second (its id is derived from the task's, so it runs once).

DBOS checkpoints every step's result, so a worker killed at any point resumes the task at the
step that was in flight, and finished steps are not run again. Steps are written so that
running one twice (killed after its effect, before its checkpoint) does no harm: rows are
upserted by (task, stage, attempt), artifacts are content-addressed, and the release target
refuses a key that is already live.
"""

from __future__ import annotations

import difflib
import random
import re
import time
from collections.abc import Callable
from typing import Any

from dbos import DBOS, SetWorkflowID
from dbos import error as dbos_errors
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.checks import run_checks
from shipyard.errors import ConfigError, MalformedReply, ProviderError, ShipyardError
from shipyard.generate import (
    FREE_PROVIDERS,
    Generation,
    GenerationRequest,
    Limit,
    Plan,
    Provider,
    price_call,
    prompt_hash,
    render,
    render_prompt,
)
from shipyard.jobs import JobKind, validate_inputs
from shipyard.memory import remember
from shipyard.model import CheckReport, CheckResult, Finding, GateOutcome, TaskState
from shipyard.orchestrator import _effects as effects
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator import _rollout as rollout
from shipyard.orchestrator._ledger import drop_hold, hold, limits_for, rates_for, spend
from shipyard.orchestrator._lineage import previous_version
from shipyard.orchestrator._memory import recall_for_task
from shipyard.orchestrator._provenance import sign_provenance
from shipyard.orchestrator._ratelimit import take_slot
from shipyard.orchestrator._runtime import Runtime, current_runtime
from shipyard.orchestrator._stage import _now, _task, set_state, stage, step
from shipyard.policy import Request
from shipyard.store import (
    ArtifactRow,
    AttemptRow,
    AuditRow,
    DecisionRow,
    ProvenanceRow,
    ReleaseRow,
    TaskRow,
    insert_ignore,
    transaction,
)

__all__ = [
    "DECISION_WORKFLOW",
    "RESUME_WORKFLOW",
    "WORKFLOW_NAME",
    "WORKFLOW_VERSION",
    "decision_workflow",
    "decision_workflow_id",
    "resume_workflow",
    "resume_workflow_id",
    "task_workflow",
]

WORKFLOW_VERSION = "shipyard-1"
"""What DBOS calls the application version: workers recover and dequeue only workflows of
their own. Bump it when the steps of a workflow change order, name or arguments (a recorded
workflow could not be resumed by the new code); a release that keeps them keeps it, so
workers of either release take each other's tasks during a rolling upgrade."""

WORKFLOW_NAME = "shipyard.task"
DECISION_WORKFLOW = "shipyard.decision"
RESUME_WORKFLOW = "shipyard.resume"
ROLLOUT_WORKFLOW = "shipyard.rollout"


def decision_workflow_id(task_id: str) -> str:
    return f"{task_id}.decision"


def rollout_workflow_id(task_id: str) -> str:
    return f"{task_id}.rollout"


def resume_workflow_id(task_id: str, resumption: int) -> str:
    """The id of the ``resumption``-th resume of a task (each provide or resume is one)."""
    return f"{task_id}.resume{resumption}"


# -- steps --------------------------------------------------------------------------------


@step("shipyard.start")
def start_step(task_id: str) -> dict[str, Any]:
    """Re-validate the inputs (the job kind may have changed since submit) and mark running."""
    rt = current_runtime()
    with stage(rt, task_id, "validate") as record:
        with transaction(rt.sessions) as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            validate_inputs(kind, task.inputs, where=f"task {task_id}")
            set_state(session, task_id, TaskState.RUNNING)
        record["summary"] = f"inputs fit the {kind.name} schema"
    return {
        "job_kind": kind.name,
        "max_attempts": kind.max_attempts,
        "on_exhausted": kind.on_exhausted,
        "attempt": 1,
        "verify_first": False,
    }


@step("shipyard.resume")
def resume_step(task_id: str) -> dict[str, Any]:
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
        set_state(session, task_id, TaskState.RUNNING)
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
        items = recall_for_task(rt, task_id)
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
        plan, limits = _plan(rt, request)
        notes = list(plan.notes)
        served: tuple[str, Generation, CheckReport | None] | None = None
        budget_blocked = other_blocked = False
        for tier in plan.tiers:
            verdict = rt.policies.authorize(_generate_request(rt, request, tier, limits))
            if not verdict.allowed:
                notes.append(f"{tier} denied by policy: {verdict.reason()}")
                other_blocked = True
                continue
            reason, by_budget = rt.router.blocked(tier, request.prompt, limits)
            if reason:
                notes.append(reason)
                budget_blocked |= by_budget
                other_blocked |= not by_budget
                continue
            reason = _hold_budget(rt, request, tier)
            if reason:
                rt.router.breaker.release(tier)
                notes.append(f"{tier} skipped: {reason}")
                budget_blocked = True
                continue
            waited = _take_rate_slot(rt, tier)
            if waited:
                notes.append(f"{tier}: waited {waited:.1f} s for its calls-per-minute limit")
            try:
                served = (tier, *_generate_on(rt, tier, request))
            except ProviderError as exc:
                _drop_hold(rt, request)
                other_blocked = True
                # "Nothing here" (404) says the service answered; the rest counts against it.
                if exc.details.get("status") == 404:
                    rt.router.breaker.succeeded(tier)
                    opened = False
                else:
                    opened = rt.router.breaker.failed(tier)
                notes.append(
                    f"{tier} failed: {exc.message}"
                    + (" (now out of service for a cool-down)" if opened else "")
                )
                continue
            except ConfigError as exc:
                _drop_hold(rt, request)
                other_blocked = True
                rt.router.breaker.failed(tier)
                notes.append(f"{tier} unavailable: {exc.message}")
                continue
            rt.router.breaker.succeeded(tier)
            notes.append(f"{tier} served" + (" (malformed reply)" if served[2] else ""))
            break
        if served is None:
            if budget_blocked and not other_blocked:
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
            _ask_person(rt, request, notes)
            record["summary"] = "waiting for a person to supply the code"
            return TaskState.WAITING_INPUT.value
        tier, generation, report = served
        _store_attempt(rt, request, generation, report, tier=tier, route=notes)
        record["summary"] = (
            f"{tier}: {generation.provider} ({generation.model}): "
            + (f"{len(generation.files)} file(s)" if report is None else "malformed reply")
            + (f", {len(request.feedback)} finding(s) fed back" if request.feedback else "")
        )
        record["tier"], record["route"] = tier, notes
        record["provider"], record["model"] = generation.provider, generation.model
        record["tokens"] = [generation.input_tokens, generation.output_tokens]
    return "generated"


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
    )


def _drop_hold(rt: Runtime, request: GenerationRequest) -> None:
    with transaction(rt.sessions) as session:
        drop_hold(session, _hold_key(request))


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
        _ask_person(rt, request, [note])
        record["summary"] = "escalated: waiting for a person to supply the code"
    return TaskState.WAITING_INPUT.value


def _plan(rt: Runtime, request: GenerationRequest) -> tuple[Plan, list[Limit]]:
    """The router's plan for this attempt, and the budgets its calls must fit."""
    settings = rt.project.settings
    requested = request.kind.tier or settings.generate.tier
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
        limits = limits_for(session, settings, task)
    plan = rt.router.plan(
        requested, job_kind=request.kind.name, failed_tier=failed_tier, rates=rates
    )
    return plan, limits


def _generate_on(
    rt: Runtime, tier: str, request: GenerationRequest
) -> tuple[Generation, CheckReport | None]:
    """The tier's generation, or a failed one with a report when the reply was malformed."""
    settings = rt.project.settings.tiers[tier]
    model_call = settings.provider not in FREE_PROVIDERS
    attributes: dict[str, Any] = {"shipyard.tier": tier, "shipyard.provider": settings.provider}
    if model_call:
        attributes |= {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": settings.provider,
            "gen_ai.system": settings.provider,
            "gen_ai.request.model": settings.model,
            "gen_ai.request.max_tokens": settings.max_tokens,
            "gen_ai.request.temperature": settings.temperature,
        }
    name = f"chat {settings.model}" if model_call else f"{settings.provider} {tier}"
    with rt.tracing.span(
        request.task_id, name, attributes=attributes, kind=SpanKind.CLIENT
    ) as span:
        rt.tracing.content(span, "gen_ai.content.prompt", request.prompt)
        try:
            generation = _call_provider(rt, rt.provider(tier), request)
            _check_outputs(request.kind, generation.files)
            report = None
        except MalformedReply as exc:
            finding = Finding(rule="generate.malformed", message=exc.message)
            report = CheckReport(
                results=(CheckResult(check="reply", passed=False, findings=(finding,)),)
            )
            generation = _failed_generation(exc)
            span.set_attribute("error.type", "malformed_reply")
            span.set_status(Status(StatusCode.ERROR, exc.message[:200]))
        if model_call:
            span.set_attribute("gen_ai.response.model", generation.model)
            span.set_attribute("gen_ai.usage.input_tokens", generation.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", generation.output_tokens)
            if generation.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [generation.finish_reason])
            rt.tracing.content(span, "gen_ai.content.completion", generation.reply)
        return generation, report


def _pause(rt: Runtime, request: GenerationRequest, notes: list[str]) -> None:
    with transaction(rt.sessions) as session:
        set_state(session, request.task_id, TaskState.PAUSED, error="\n".join(notes))
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


def _ask_person(rt: Runtime, request: GenerationRequest, notes: list[str]) -> None:
    """Record the attempt as the human tier's, without files, and wait for `shipyard provide`."""
    waiting = Generation(files={}, provider="human", model="")
    _store_attempt(rt, request, waiting, None, tier="human", route=notes)
    with transaction(rt.sessions) as session:
        set_state(session, request.task_id, TaskState.WAITING_INPUT)


def _call_provider(rt: Runtime, provider: Provider, request: GenerationRequest) -> Generation:
    """Call the provider, retrying transient failures with backoff that honours Retry-After.

    Rate limits, timeouts, lost connections and 5xx are worth another call; a 4xx (a bad key,
    an unknown model) is not. Backoff doubles from 1 s with ±20 % jitter; a server's
    Retry-After replaces it (waited exactly, at most 60 s).
    """
    tries = rt.project.settings.generate.tries_per_call
    for call in range(1, tries):
        try:
            return provider.generate(request)
        except MalformedReply:
            raise
        except ProviderError as exc:
            status = exc.details.get("status")
            if not (status is None or status in (408, 409, 429) or int(status) >= 500):
                raise
            asked = exc.details.get("retry_after")
            if asked is not None:  # the server said when: wait exactly that (at most a minute)
                time.sleep(min(float(asked), 60.0))
            else:
                time.sleep(2.0 ** (call - 1) * (0.8 + 0.4 * random.random()))
    return provider.generate(request)


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
    prompt = render_prompt(
        kind, inputs, recalled=recalled, feedback=feedback, previous_files=previous_files
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
) -> None:
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
        row.feedback = [f.to_dict() for f in request.feedback]
        row.recalled = [item["id"] for item in request.recalled]
        row.generated_at = _now()
        row.report = report.to_dict() if report is not None else None
        row.passed = False if report is not None else None
        row.checked_at = _now() if report is not None else None
        _task(session, request.task_id).attempts = request.attempt
        drop_hold(session, _hold_key(request))  # the attempt now carries the real spend
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


def _check_outputs(kind: JobKind, files: dict[str, str]) -> None:
    expected, got = set(kind.outputs), set(files)
    if expected != got:
        raise MalformedReply(
            f"the generator returned files {sorted(got)}, the job kind wants {sorted(expected)}",
            hint="a provider must produce exactly the job kind's outputs",
        )


@step("shipyard.verify")
def verify_step(task_id: str, attempt: int) -> bool:
    """Run the job kind's checks on this attempt's output in the sandbox; store the report."""
    rt = current_runtime()
    with stage(rt, task_id, "verify", attempt) as record:
        with rt.sessions() as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            row = session.scalar(
                select(AttemptRow).where(
                    AttemptRow.task_id == task_id, AttemptRow.number == attempt
                )
            )
            if row is None:
                raise ShipyardError(f"task {task_id}: attempt {attempt} has no generation")
            if row.report is not None and row.passed is False and not row.files:
                record["summary"] = "nothing to check: the reply was malformed"
                return False
            files = dict(row.files)
        rt.require_isolation_for(kind)
        report = run_checks(kind, files, backend=rt.sandbox, limits=rt.limits, registry=rt.checks)
        end = time.time_ns()
        for result in reversed(report.results):  # the checks ran one after another
            start = end - int(result.duration_ms * 1e6)
            rt.tracing.finished_span(
                task_id,
                f"check {result.check}",
                start_ns=start,
                end_ns=end,
                attributes={
                    "shipyard.check": result.check,
                    "shipyard.check.passed": result.passed,
                    "shipyard.check.findings": len(result.findings),
                    "shipyard.sandbox": report.sandbox,
                },
                error="" if result.passed else f"{len(result.findings)} finding(s)",
            )
            end = start
        with transaction(rt.sessions) as session:
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.task_id == task_id, AttemptRow.number == attempt)
                .values(report=report.to_dict(), passed=report.passed, checked_at=_now())
            )
        failed = [r.check for r in report.results if not r.passed]
        record["summary"] = (
            f"{len(report.results)} check(s) passed"
            if report.passed
            else f"failed: {', '.join(failed)} ({len(report.findings)} finding(s))"
        )
        record["sandbox"] = report.sandbox
    return report.passed


@step("shipyard.register")
def register_step(task_id: str, attempt: int) -> str:
    """Store the passing output as a content-addressed artifact with its provenance."""
    rt = current_runtime()
    with stage(rt, task_id, "register") as record, transaction(rt.sessions) as session:
        task = _task(session, task_id)
        kind = rt.jobs.get(task.job_kind)
        row = session.scalar(
            select(AttemptRow).where(AttemptRow.task_id == task_id, AttemptRow.number == attempt)
        )
        if row is None or not row.passed:
            raise ShipyardError(f"task {task_id}: attempt {attempt} did not pass its checks")
        stored = rt.artifacts.put(row.files)  # rewrites files a gc may have removed
        session.execute(
            update(ArtifactRow)
            .where(ArtifactRow.id == stored.id, ArtifactRow.collected_at.is_not(None))
            .values(collected_at=None)
        )
        insert_ignore(
            session,
            ArtifactRow,
            {
                "id": stored.id,
                "job_kind": kind.name,
                "input_key": task.input_key,
                "files": stored.manifest,
                "size": stored.size,
                "created_at": _now(),
                "first_task_id": task_id,
            },
        )
        provenance = {
            "artifact": stored.id,
            "files": stored.manifest,
            "task": task_id,
            "domain": task.domain,
            "job_kind": kind.name,
            "input_key": task.input_key,
            "inputs_hash": task.inputs_hash,
            "template_hash": kind.template_hash,
            "prompt_hash": row.prompt_hash,
            "tier": row.tier,
            "provider": row.provider,
            "model": row.model,
            "attempts": attempt,
            "checks": row.report,
            "recalled": row.recalled,
            "submitted_by": task.submitted_by,
            "submitted_at": task.submitted_at.isoformat(),
            "generated_at": row.generated_at.isoformat(),
            "registered_at": _now().isoformat(),
            "approvals": [],
        }
        existing = session.get(ProvenanceRow, task_id)
        if existing is None:
            session.add(
                ProvenanceRow(
                    task_id=task_id, artifact_id=stored.id, record=provenance, created_at=_now()
                )
            )
            session.flush()
        task.artifact_id = stored.id
        sign_provenance(rt, session, task_id)
        record["summary"] = f"artifact {stored.id[:19]} ({len(stored.manifest)} file(s))"
        record["artifact"] = stored.id
    return stored.id


@step("shipyard.gate")
def gate_step(task_id: str, attempt: int) -> str:
    """Policy decides: release now, after N distinct approvals, or never (see policy.gate)."""
    rt = current_runtime()
    with stage(rt, task_id, "gate") as record, transaction(rt.sessions) as session:
        task = _task(session, task_id)
        kind = rt.jobs.get(task.job_kind)
        row = session.scalar(
            select(AttemptRow).where(AttemptRow.task_id == task_id, AttemptRow.number == attempt)
        )
        earlier = _gated_before(session, task_id, row)
        if earlier is not None:  # a run cut short after its decision was recorded
            record["summary"] = f"{earlier.decision}: {earlier.reason} (recorded before)"
            record["outcome"] = earlier.decision
            return earlier.decision
        report = CheckReport.from_dict(row.report if row is not None and row.report else {})
        subject = govern.job_kind(kind)
        decision = govern.gate_for(
            rt,
            kind,
            report,
            diff_lines=_diff_lines(rt, session, task, row.files if row is not None else {}),
            cost_microusd=int(spend(session, task_id=task_id).usd * 1_000_000),
        )
        task.risk, task.approvals_required = decision.risk.value, decision.approvals
        session.add(
            DecisionRow(
                task_id=task_id,
                decision=f"policy:{decision.outcome.value}",
                actor="policy",
                reason=decision.reason,
                decided_at=_now(),
            )
        )
        govern.record(
            session,
            actor=f"agent {kind.domain}",
            action="release",
            subject=subject,
            decision=decision.outcome.value,
            reason=decision.reason,
            task_id=task_id,
            detail={"context": decision.context, "approvals_required": decision.approvals},
        )
        if decision.outcome is GateOutcome.NEEDS_APPROVAL:
            set_state(session, task_id, TaskState.WAITING_APPROVAL)
        record["summary"] = f"{decision.outcome.value}: {decision.reason}"
        record["outcome"] = decision.outcome.value
        record["approvals"], record["risk"] = decision.approvals, decision.risk.value
    return decision.outcome.value


def _gated_before(session: Session, task_id: str, attempt: AttemptRow | None) -> AuditRow | None:
    """The gate's recorded decision on this attempt, when a run of the step already made it.

    The decision, its audit entry and the task's state commit together, before DBOS records
    the step's result; a worker killed in between leaves the step to run again, and it must
    not decide (and audit) twice. A later attempt (a person's code) is gated afresh.
    """
    if attempt is None or attempt.checked_at is None:
        return None
    checked = attempt.checked_at.isoformat(timespec="microseconds")
    return session.scalar(
        select(AuditRow)
        .where(AuditRow.task_id == task_id, AuditRow.action == "release", AuditRow.at >= checked)
        .order_by(AuditRow.seq.desc())
        .limit(1)
    )


def _diff_lines(rt: Runtime, session: Session, task: TaskRow, files: dict[str, Any]) -> int:
    """Lines changed against the version it replaces (all lines if none)."""
    previous = previous_version(session, task)
    before = rt.artifacts.read(rt.artifacts.get(previous.id)) if previous is not None else {}
    changed = 0
    for name in sorted(set(before) | set(files)):
        old = before.get(name, b"").decode("utf-8", "replace").splitlines()
        new = str(files.get(name, "")).splitlines()
        for line in difflib.unified_diff(old, new, lineterm="", n=0):
            if line[:1] in "+-" and not line.startswith(("+++", "---")):
                changed += 1
    return changed


@step("shipyard.read_decision")
def read_decision_step(task_id: str) -> dict[str, Any] | None:
    """The people's decision on this task, if one is recorded (the database is the truth).

    A rejection decides; otherwise the approvals, all of them, in order.
    """
    rt = current_runtime()
    with rt.sessions() as session:
        rows = session.scalars(
            select(DecisionRow)
            .where(
                DecisionRow.task_id == task_id,
                DecisionRow.decision.in_(("approved", "rejected")),
            )
            .order_by(DecisionRow.id)
        ).all()
        if not rows:
            return None
        task = _task(session, task_id)
        decided = [
            {
                "decision": r.decision,
                "actor": r.actor,
                "reason": r.reason,
                "at": r.decided_at.isoformat(),
            }
            for r in rows
        ]
    rejected = [d for d in decided if d["decision"] == "rejected"]
    return {
        "job_kind": task.job_kind,
        "decision": "rejected" if rejected else "approved",
        "reason": rejected[0]["reason"] if rejected else "",
        "decisions": rejected[:1] or decided,
    }


@step("shipyard.record_decision")
def record_decision_step(task_id: str, decision: dict[str, Any]) -> None:
    rt = current_runtime()
    with stage(rt, task_id, "approval") as record, transaction(rt.sessions) as session:
        provenance = session.get(ProvenanceRow, task_id)
        if provenance is not None:
            known = list(provenance.record["approvals"])
            added = [d for d in decision["decisions"] if d not in known]
            provenance.record = provenance.record | {"approvals": known + added}
            if added:
                sign_provenance(rt, session, task_id)  # the signed statement names them too
        record["summary"] = "; ".join(
            f"{d['decision']} by {d['actor']}" + (f": {d['reason']}" if d["reason"] else "")
            for d in decision["decisions"]
        )


@step("shipyard.release")
def release_step(task_id: str) -> dict[str, Any]:
    """Put the artifact live through the ``publish`` tool (journalled: a re-run replays it)."""
    rt = current_runtime()
    with stage(rt, task_id, "release") as record:
        with rt.sessions() as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            inputs, artifact_id = dict(task.inputs), task.artifact_id
        if kind.release is None:
            raise ShipyardError(f"job kind {kind.name!r} has no release target")
        args = {
            "target": kind.release.target,
            "path": render(kind.release.path, inputs, name="path", where=str(kind.folder)),
            "title": str(inputs.get("name", task.input_key)),
            "artifact": artifact_id,
            "release_key": task_id,
        }
        outcome = effects.invoke(rt, kind, task_id, 0, "publish", args)
        if not outcome.ok:
            raise ShipyardError(f"release failed: {outcome.error}")
        result = outcome.result
        with transaction(rt.sessions) as session:
            if not result["already_live"]:  # what this replaces at its path is live no more
                session.execute(
                    update(ReleaseRow)
                    .where(
                        ReleaseRow.target == result["target"],
                        ReleaseRow.path == result["url_path"],
                        ReleaseRow.state == "live",
                        ReleaseRow.task_id != task_id,
                    )
                    .values(state="replaced")
                )
            row = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
            if row is not None and row.state in ("canary", "paused"):  # a canary promoted
                row.state, row.version, row.weight = "live", result["version"][:40], 100.0
                row.finished_at, row.command, row.reason = _now(), "", ""
            if row is None:
                session.add(
                    ReleaseRow(
                        task_id=task_id,
                        artifact_id=artifact_id,
                        target=result["target"],
                        path=result["url_path"],
                        version=result["version"][:40],
                        state="live",
                        released_at=_now(),
                        weight=100.0,
                        finished_at=_now(),
                    )
                )
        record["summary"] = (
            f"live on {result['target']} at {result['url_path']} (version {result['version']})"
        )
        record["already_live"] = bool(result["already_live"]) or outcome.replayed
    return result


@step("shipyard.effect")
def effect_step(task_id: str, position: int, release: dict[str, Any]) -> dict[str, Any]:
    """The job kind's effect at ``position`` (1-based), its options rendered with the inputs."""
    rt = current_runtime()
    with stage(rt, task_id, f"effect {position}") as record:
        with rt.sessions() as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            inputs = dict(task.inputs)
        spec = kind.effects[position - 1]
        context = inputs | {"release": release, "task_id": task_id}
        args = _render_options(spec.options, context, where=f"{kind.folder} effect {position}")
        outcome = effects.invoke(rt, kind, task_id, position, spec.tool, args)
        record["summary"] = (
            f"{spec.tool}: " + ("replayed from the journal" if outcome.replayed else "done")
            if outcome.ok
            else f"{spec.tool} failed: {outcome.error}"
        )
    return {"ok": outcome.ok, "error": outcome.error}


def _render_options(value: Any, context: dict[str, Any], *, where: str) -> Any:
    if isinstance(value, str):
        return render(value, context, name="option", where=where)
    if isinstance(value, dict):
        return {k: _render_options(v, context, where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_options(v, context, where=where) for v in value]
    return value


@step("shipyard.compensate")
def compensate_step(task_id: str, reason: str) -> list[str]:
    """Undo the task's completed effects, newest first (a re-run skips what is undone)."""
    rt = current_runtime()
    with stage(rt, task_id, "compensate") as record:
        with rt.sessions() as session:
            kind = rt.jobs.get(_task(session, task_id).job_kind)
        notes = effects.compensate(rt, kind, task_id, reason)
        record["summary"] = "; ".join(notes) or "nothing to undo"
    return notes


@step("shipyard.finish")
def finish_step(task_id: str, state: str, outcome: str, error: str = "") -> None:
    """Remember the outcome for next time and close the task."""
    rt = current_runtime()
    with stage(rt, task_id, "remember") as record, transaction(rt.sessions) as session:
        task = _task(session, task_id)
        started, job_kind, domain = task.submitted_at, task.job_kind, task.domain
        if task.finished_at is not None and task.state == state:
            # A run cut short after it closed the task: remembered and audited already.
            record["summary"] = f"task {state} (closed before)"
        else:
            for kind, text in _memories(rt, session, task, outcome, error):
                remember(
                    session,
                    rt.memory,
                    namespace=task.domain,
                    kind=kind,
                    job_kind=task.job_kind,
                    input_key=task.input_key,
                    task_id=task_id,
                    text=text,
                    meta={"artifact": task.artifact_id, "state": state},
                    tags=(task.job_kind, kind),
                )
            set_state(session, task_id, TaskState(state), error=error)
            govern.record(
                session,
                actor=f"agent {task.domain}",
                action="close",
                subject=f"job kind {task.job_kind}",
                decision=state,
                reason=error or outcome,
                task_id=task_id,
            )
            record["summary"] = f"remembered as {outcome}; task {state}"
    # The root span closes the trace once the task is closed (a re-run stores it again with
    # the same ids; `shipyard trace` shows each span id once).
    rt.tracing.task_root(task_id, job_kind=job_kind, domain=domain, state=state, started=started)


_EXCERPT = 800
"""Characters of an approved output kept in memory (enough to recall its style and facts)."""


def _memories(
    rt: Runtime, session: Session, task: TaskRow, outcome: str, error: str
) -> list[tuple[str, str]]:
    """(kind, text) to remember of a finished task: the outcome, and a repair that worked."""
    attempts = session.scalars(
        select(AttemptRow).where(AttemptRow.task_id == task.id).order_by(AttemptRow.number)
    ).all()
    subject = f"{task.job_kind} for {task.input_key}"
    found: list[tuple[str, str]] = []
    if outcome == "failed":
        findings = CheckReport.from_dict(attempts[-1].report or {}).findings if attempts else []
        listed = "; ".join(f"{f.rule}: {f.message}" for f in findings[:5])
        found.append((outcome, f"{subject} failed its checks: {listed or error}"))
    elif outcome == "rejected":
        found.append((outcome, f"{subject} was rejected: {error}"))
    elif outcome in ("published", "approved") and task.artifact_id:
        spec = ", ".join(
            f"{k}={'; '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in task.inputs.items()
        )
        files = rt.artifacts.read(rt.artifacts.get(task.artifact_id))
        prose = [n for n in sorted(files) if n.endswith((".md", ".html", ".txt"))]
        excerpt = " ".join(files[n].decode("utf-8", "replace") for n in prose or sorted(files))
        excerpt = re.sub(r"<[^>]+>|\s+", " ", excerpt).strip()[:_EXCERPT]
        found.append(
            (outcome, f"{subject} {outcome} as artifact {task.artifact_id[:19]}. "
             f"Spec: {spec}. Output: {excerpt}")
        )  # fmt: skip
    else:
        found.append((outcome, f"{subject} ended {outcome}: {error}".rstrip(": ")))
    passing = [a for a in attempts if a.passed]
    before = {a.number: a for a in attempts}.get(passing[-1].number - 1) if passing else None
    if passing and before is not None:
        failed = CheckReport.from_dict(before.report or {}).findings
        fixed = "; ".join(f"{f.rule}: {f.message}" for f in failed[:5])
        found.append(
            ("repair", f"{subject}: attempt {passing[-1].number - 1} failed ({fixed}); "
             f"attempt {passing[-1].number} fixed it and passed")
        )  # fmt: skip
    return found


# -- the workflow -------------------------------------------------------------------------


def _guarded(task_id: str, body: Callable[[], str]) -> str:
    try:
        return body()
    except dbos_errors.DBOSMaxStepRetriesExceeded as exc:
        last = exc.errors[-1] if exc.errors else exc
        reason = f"{exc.step_name} failed {exc.max_retries} times; last: {_describe(last)}"
    except dbos_errors.DBOSException:
        raise  # DBOS itself (e.g. shutting down): the workflow resumes at the next launch
    except Exception as exc:
        reason = _describe(exc)
    # A stage crashed after its retries (infrastructure, or a bug): the task ends in ERROR
    # with the reason, distinct from FAILED (the generated code did not pass its checks).
    finish_step(task_id, TaskState.ERROR.value, "error", reason)
    return TaskState.ERROR.value


def _describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"


@DBOS.workflow(name=WORKFLOW_NAME)
def task_workflow(task_id: str) -> str:
    """Run one task to its end or to the gate; returns the state it reached."""
    rt = current_runtime()
    return _guarded(task_id, lambda: _pipeline(rt, task_id))


@DBOS.workflow(name=RESUME_WORKFLOW)
def resume_workflow(task_id: str) -> str:
    """Go on with a task after a person supplied its code or resumed it from a pause."""
    rt = current_runtime()
    return _guarded(task_id, lambda: _pipeline(rt, task_id, resuming=True))


@DBOS.workflow(name=DECISION_WORKFLOW)
def decision_workflow(task_id: str) -> str:
    """Carry out a person's recorded decision: release, or close as rejected."""
    rt = current_runtime()
    return _guarded(task_id, lambda: _after_decision(rt, task_id))


def _pipeline(rt: Runtime, task_id: str, *, resuming: bool = False) -> str:
    plan = resume_step(task_id) if resuming else start_step(task_id)
    attempt, max_attempts = int(plan["attempt"]), int(plan["max_attempts"])
    verify_first = bool(plan["verify_first"])
    recalled = recall_step(task_id, attempt if resuming else 0)
    passed_attempt = 0
    # A job kind that escalates gets one more attempt, written by a person.
    limit = max_attempts + (1 if plan["on_exhausted"] == "person" else 0)
    while attempt <= limit:
        if not verify_first:
            if attempt > max_attempts:
                return escalate_step(task_id, attempt, recalled)
            outcome = generate_step(task_id, attempt, recalled)
            if outcome != "generated":
                return outcome  # waiting for a person, or paused on a budget
        verify_first = False
        if verify_step(task_id, attempt):
            passed_attempt = attempt
            break
        attempt += 1
    if not passed_attempt:
        finish_step(task_id, TaskState.FAILED.value, "failed", f"checks failed {limit}×")
        return TaskState.FAILED.value
    register_step(task_id, passed_attempt)
    outcome = gate_step(task_id, passed_attempt)
    if outcome == GateOutcome.DENY.value:
        finish_step(task_id, TaskState.DENIED.value, "denied", "denied by policy at the gate")
        return TaskState.DENIED.value
    if outcome == GateOutcome.NEEDS_APPROVAL.value:
        return TaskState.WAITING_APPROVAL.value
    return _release(rt, task_id, str(plan["job_kind"]))


def _after_decision(rt: Runtime, task_id: str) -> str:
    decision = read_decision_step(task_id)
    if decision is None:
        raise ShipyardError(f"task {task_id}: no approval or rejection is recorded")
    record_decision_step(task_id, decision)
    if decision["decision"] == "rejected":
        finish_step(task_id, TaskState.REJECTED.value, "rejected", decision["reason"])
        return TaskState.REJECTED.value
    return _release(rt, task_id, str(decision["job_kind"]))


@DBOS.workflow(name=ROLLOUT_WORKFLOW)
def rollout_workflow(task_id: str, job_kind: str) -> str:
    """A canary rollout, then the rest of the saga (or the rollback and its compensation)."""
    rt = current_runtime()
    return _guarded(task_id, lambda: _after_rollout(rt, task_id, job_kind))


def _after_rollout(rt: Runtime, task_id: str, job_kind: str) -> str:
    outcome, reason = rollout.canary(task_id)
    if outcome == "rollback":
        notes = compensate_step(task_id, reason)
        undone = "; ".join(notes) or "nothing to undo"
        finish_step(task_id, TaskState.ROLLED_BACK.value, "rolled_back", f"{reason}; {undone}")
        return TaskState.ROLLED_BACK.value
    return _publish(rt, task_id, rt.jobs.get(job_kind))


def _release(rt: Runtime, task_id: str, job_kind: str) -> str:
    """Release now, or hand over to a rollout workflow of its own.

    A rollout waits out its bakes outside the domain's queue (it is not enqueued), so a
    baking release does not hold one of the queue's slots from the tasks behind it.
    """
    kind = rt.jobs.get(job_kind)
    if kind.release is None and not kind.effects:
        finish_step(task_id, TaskState.DONE.value, "approved")
        return TaskState.DONE.value
    if rollout.plan_of(rt, kind) is not None:
        with SetWorkflowID(rollout_workflow_id(task_id)):
            DBOS.start_workflow(rollout_workflow, task_id, job_kind)
        return TaskState.RELEASING.value
    return _publish(rt, task_id, kind)


def _publish(rt: Runtime, task_id: str, kind: JobKind) -> str:
    """The saga: release, then the job kind's effects; undo them in reverse if one fails."""
    release = release_step(task_id) if kind.release is not None else {}
    for position in range(1, len(kind.effects) + 1):
        done = effect_step(task_id, position, release)
        if not done["ok"]:
            reason = f"effect {position} failed: {done['error']}"
            notes = compensate_step(task_id, reason)
            undone = "; ".join(notes) or "nothing to undo"
            finish_step(task_id, TaskState.COMPENSATED.value, "compensated", f"{reason}; {undone}")
            return TaskState.COMPENSATED.value
    state = TaskState.PUBLISHED if kind.release is not None else TaskState.DONE
    finish_step(task_id, state.value, "published" if kind.release is not None else "approved")
    return state.value
