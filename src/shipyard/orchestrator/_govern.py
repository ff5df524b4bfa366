"""Authorization and audit for the orchestrator: who is asking, may they, and the record.

Every action with an effect asks the policies first (default deny). A refusal is written to
the audit log in its own transaction and raised as PolicyDenied; an allowed action is
audited by the caller in the same transaction as its effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from shipyard.errors import PolicyDenied
from shipyard.jobs import JobKind
from shipyard.model import CheckReport, Risk
from shipyard.observe import audit
from shipyard.orchestrator._runtime import Runtime
from shipyard.policy import GateDecision, Request, Verdict, entities, gate
from shipyard.store import transaction

__all__ = ["Subject", "agent_request", "job_kind", "person_request", "require", "target_of"]


@dataclass(frozen=True, kw_only=True)
class Subject:
    """A resource as Cedar sees it, with the entities it brings and a label for the record."""

    uid: dict[str, str]
    entities: list[dict[str, Any]]
    label: str


def job_kind(kind: JobKind) -> Subject:
    ref, found = entities.job_kind(
        kind.name, kind.domain, risk=kind.risk.value, publish=kind.publish
    )
    return Subject(uid=ref, entities=found, label=f"job kind {kind.name}")


def target_of(rt: Runtime, kind: JobKind) -> tuple[str, str, Risk]:
    """(target name, its environment, its risk) of a job kind's release; '' when it has none."""
    if kind.release is None:
        return "", "", Risk.LOW
    settings = rt.project.settings.targets[kind.release.target]
    return kind.release.target, settings.environment, Risk(settings.risk)


def target(rt: Runtime, name: str) -> Subject:
    settings = rt.project.settings.targets[name]
    ref, found = entities.target(name, environment=settings.environment, risk=settings.risk)
    return Subject(uid=ref, entities=found, label=f"target {name}")


def gate_for(
    rt: Runtime, kind: JobKind, report: CheckReport, *, diff_lines: int, cost_microusd: int
) -> GateDecision:
    """The gate's decision for a checked output of ``kind`` under ``rt``'s policies."""
    target_name, environment, target_risk = target_of(rt, kind)
    subject = job_kind(kind)
    agent, agent_entities = entities.agent(kind.domain)
    return gate(
        rt.policies,
        principal=agent,
        resource=subject.uid,
        entities=[*agent_entities, *subject.entities],
        report=report,
        base_risk=[kind.risk, target_risk],
        diff_lines=diff_lines,
        large_diff_lines=rt.project.settings.policy.large_diff_lines,
        cost_microusd=cost_microusd,
        target=target_name,
        environment=environment,
    )


def person_request(
    rt: Runtime, name: str, action: str, subject: Subject, context: dict[str, Any]
) -> Request:
    people = rt.project.settings.people
    ref, found = entities.person(name, people[name].roles if name in people else [])
    return Request(
        principal=ref,
        action=action,
        resource=subject.uid,
        context=context,
        entities=[*found, *subject.entities],
    )


def agent_request(domain: str, action: str, subject: Subject, context: dict[str, Any]) -> Request:
    ref, found = entities.agent(domain)
    return Request(
        principal=ref,
        action=action,
        resource=subject.uid,
        context=context,
        entities=[*found, *subject.entities],
    )


def require(
    rt: Runtime, request: Request, *, actor: str, subject: Subject, task_id: str = ""
) -> Verdict:
    """The verdict if allowed; else audit the refusal and raise PolicyDenied."""
    verdict = rt.policies.authorize(request)
    if verdict.allowed:
        return verdict
    with transaction(rt.sessions) as session:
        record(
            session,
            actor=actor,
            action=request.action,
            subject=subject,
            decision="deny",
            reason=verdict.reason(),
            task_id=task_id,
            detail={"context": request.context},
        )
    raise PolicyDenied(
        f"{actor} may not {request.action} {subject.label}: {verdict.reason()}",
        hint="policies decide who may do what: see `shipyard policy test` and docs/policies.md",
        details={"action": request.action, "resource": subject.label},
    )


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: Subject | str,
    decision: str,
    reason: str = "",
    task_id: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """One audit entry in the caller's transaction."""
    audit.append(
        session,
        actor=actor,
        action=action,
        resource=subject if isinstance(subject, str) else subject.label,
        decision=decision,
        reason=reason,
        task_id=task_id,
        detail=detail,
    )


CONTEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    "submit": {"rows": 1},
    "generate": {"tier": "template", "provider": "template", "attempt": 1, "cost_microusd": 0},
    "release": {
        "checks_passed": True,
        "warnings": 0,
        "diff_lines": 0,
        "cost_microusd": 0,
        "approvals": 0,
    },
    "approve": {"is_submitter": False},
    "provide": {"is_submitter": False},
    "rollback": {},
    "steer": {"command": "pause"},
    "call_tool": {},
}
"""What a policy test case may leave out of its context (the rest comes from the project)."""


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    name: str
    request: str
    expected: str
    verdict: Verdict

    @property
    def passed(self) -> bool:
        return ("allow" if self.verdict.allowed else "deny") == self.expected


def evaluate_case(rt: Runtime, case: dict[str, Any], *, where: str) -> CaseResult:
    """One policy test case (see ``shipyard policy test``), with the project's entities."""
    from shipyard.errors import InputError

    def need(key: str) -> str:
        value = case.get(key)
        if not isinstance(value, str) or not value:
            raise InputError(f"{where}: key {key!r} is missing or not a string")
        return value

    action = need("action")
    if action not in CONTEXT_DEFAULTS:
        raise InputError(
            f"{where}: action {action!r} is not one of Shipyard's",
            hint=f"actions: {', '.join(CONTEXT_DEFAULTS)}",
        )
    expected = need("expect")
    if expected not in ("allow", "deny"):
        raise InputError(f"{where}: expect must be 'allow' or 'deny', not {expected!r}")
    context = dict(CONTEXT_DEFAULTS[action])
    subject: Subject
    if "job_kind" in case:
        kind = rt.jobs.get(need("job_kind"))
        subject = job_kind(kind)
        name, environment, target_risk = target_of(rt, kind)
        context |= {"risk": max(kind.risk, target_risk, key=list(Risk).index).value}
        context |= {"target": name, "environment": environment}
        if action in ("approve", "provide", "submit", "generate"):
            context = {k: v for k, v in context.items() if k in _CONTEXT_KEYS[action]}
    elif "target" in case:
        subject = target(rt, need("target"))
    elif "tool" in case:
        ref, found = entities.tool(need("tool"), capability=str(case.get("capability", "")))
        subject = Subject(uid=ref, entities=found, label=f"tool {case['tool']}")
        context |= {"capability": str(case.get("capability", "")), "job_kind": ""}
    else:
        raise InputError(f"{where}: name the resource: job_kind, target or tool")
    context |= dict(case.get("context", {}))
    if "as" in case:
        person = need("as")
        if "roles" in case:
            ref, found = entities.person(person, [str(r) for r in case["roles"]])
            request = Request(
                principal=ref,
                action=action,
                resource=subject.uid,
                context=context,
                entities=[*found, *subject.entities],
            )
        else:
            request = person_request(rt, person, action, subject, context)
    elif "agent" in case:
        request = agent_request(need("agent"), action, subject, context)
    else:
        raise InputError(f"{where}: name the principal: as = PERSON or agent = DOMAIN")
    verdict = rt.policies.authorize(request)
    malformed = [e for e in verdict.errors if "failed to build request" in e]
    if malformed:
        raise InputError(
            f"{where}: the request does not fit Shipyard's schema: {malformed[0]}",
            hint="check the action's resource type and context keys (`shipyard policy schema`)",
        )
    return CaseResult(
        name=str(case.get("name", where)),
        request=request.describe(),
        expected=expected,
        verdict=verdict,
    )


_CONTEXT_KEYS = {
    "submit": {"rows"},
    "generate": {"tier", "provider", "attempt", "cost_microusd"},
    "approve": {"is_submitter", "risk", "environment"},
    "provide": {"is_submitter"},
}
