"""Authorization and audit for the orchestrator: who is asking, may they, and the record.

Every action with an effect asks the policies first (default deny). A refusal is written to
the audit log in its own transaction and raised as PolicyDenied; an allowed action is
audited by the caller in the same transaction as its effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from shipyard.config import Project
from shipyard.errors import ConfigError, PolicyDenied
from shipyard.jobs import JobKind
from shipyard.model import CheckReport, Risk
from shipyard.observe import audit
from shipyard.orchestrator._runtime import Runtime
from shipyard.policy import GateDecision, Policies, Request, Verdict, entities, gate
from shipyard.store import transaction

__all__ = [
    "PRODUCTION",
    "ImmediateRelease",
    "Subject",
    "agent_request",
    "immediate_release",
    "job_kind",
    "person_request",
    "person_subject",
    "require",
    "require_release_plan",
    "require_release_plans",
    "target_of",
]

PRODUCTION = "production"
"""The environment whose targets take a release at once only where a policy permits
``release_immediately``; elsewhere they need a rollout plan."""


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
    rt: Runtime,
    kind: JobKind,
    report: CheckReport,
    *,
    diff_lines: int,
    cost_microusd: int,
    change: dict[str, Any] | None = None,
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
        change=change,
    )


def person_subject(rt: Runtime, name: str) -> Subject:
    """Person::"name" as a resource (whom someone acts for), with the roles it holds."""
    people = rt.project.settings.people
    ref, found = entities.person(name, people[name].roles if name in people else [])
    return Subject(uid=ref, entities=found, label=f"person {name}")


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


@dataclass(frozen=True, kw_only=True)
class ImmediateRelease:
    """A release that would take all of a production target's traffic at once."""

    kind: JobKind
    target: str
    request: Request
    """The ``release_immediately`` question that must be answered yes."""


def _refusal(target: str, kinds: list[str], reasons: list[str]) -> str:
    named = ", ".join(repr(k) for k in kinds)
    releases = f"a release of job kind {named}" if len(kinds) == 1 else f"releases of {named}"
    return (
        f"target {target!r} is in production and has no rollout plan: {releases} would take "
        f"all of its traffic at once ({'; '.join(dict.fromkeys(reasons))})"
    )


def immediate_release(project: Project, kind: JobKind) -> ImmediateRelease | None:
    """What a release of ``kind`` must have permitted to go out at once; None when it needs
    nothing (no release, a rollout plan, or a target not in production)."""
    if kind.release is None:
        return None
    name = kind.release.target
    settings = project.settings.targets[name]
    if settings.rollout is not None or settings.environment != PRODUCTION:
        return None
    ref, found = entities.target(name, environment=settings.environment, risk=settings.risk)
    subject = Subject(uid=ref, entities=found, label=f"target {name}")
    request = agent_request(kind.domain, "release_immediately", subject, {"job_kind": kind.name})
    return ImmediateRelease(kind=kind, target=name, request=request)


def _plan_hint(project: Project, names: list[str]) -> str:
    """How to fix unplanned production targets ``names`` (a git target has no rollout)."""
    targets = project.settings.targets
    fixes = [
        f"add [targets.{n}.rollout] (canary stages) to {project.config_path}"
        for n in names
        if targets[n].kind != "git"  # a git target has no traffic to shift
    ]
    permits = " ".join(
        f'`permit(principal, action == Action::"release_immediately", resource == Target::"{n}");`'
        for n in names
    )
    fixes.append(f"permit releasing at once in a policy file: {permits}")
    fixes.append('give the target an environment other than "production"')
    return ", or ".join(fixes) + " (see docs/releases.md)"


def require_release_plans(project: Project, policies: Policies, kinds: Iterable[JobKind]) -> None:
    """Refuse (ConfigError) when any of ``kinds`` would release at once to a production
    target that no policy lets take a release that way."""
    refused: dict[str, tuple[list[str], list[str]]] = {}  # target -> job kinds, reasons
    for kind in kinds:
        found = immediate_release(project, kind)
        if found is None:
            continue
        verdict = policies.authorize(found.request)
        if not verdict.allowed:
            names, reasons = refused.setdefault(found.target, ([], []))
            names.append(kind.name)
            reasons.append(verdict.reason())
    if refused:
        raise ConfigError(
            "; ".join(_refusal(t, names, reasons) for t, (names, reasons) in refused.items()),
            hint=_plan_hint(project, list(refused)),
            details={"targets": list(refused)},
        )


def require_release_plan(rt: Runtime, kind: JobKind, *, task_id: str) -> Verdict | None:
    """At the release itself: a production target without a rollout plan takes it only when a
    policy permits ``release_immediately`` (a refusal is audited and raised as PolicyDenied).
    The verdict that allowed it, or None when no permit was needed."""
    found = immediate_release(rt.project, kind)
    if found is None:
        return None
    verdict = rt.policies.authorize(found.request)
    if verdict.allowed:
        return verdict
    with transaction(rt.sessions) as session:
        record(
            session,
            actor=f"agent {kind.domain}",
            action="release_immediately",
            subject=target(rt, found.target),
            decision="deny",
            reason=verdict.reason(),
            task_id=task_id,
        )
    raise PolicyDenied(
        _refusal(found.target, [kind.name], [verdict.reason()]),
        hint=_plan_hint(rt.project, [found.target]),
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
    "act_for": {},
    "issue_token": {"role": "viewer"},
    "activate_policy": {"regressions": 0, "accept_regressions": False},
    "release_immediately": {"job_kind": ""},
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
    elif "person" in case:
        subject = person_subject(rt, need("person"))
    elif "policy_file" in case:
        ref, found = entities.policy_file(need("policy_file"))
        subject = Subject(uid=ref, entities=found, label=f"policy {case['policy_file']}")
    else:
        raise InputError(
            f"{where}: name the resource: job_kind, target, tool, person or policy_file"
        )
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
