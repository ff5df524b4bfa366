"""Activating a candidate policy: only by a person the live policies permit
``activate_policy``, only with a replay made for exactly that policy against exactly what
is live, recorded in the audit log before the live file is switched."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import InputError, StateError
from shipyard.orchestrator import Runtime, govern
from shipyard.policy import Policies, Verdict, entities
from shipyard.replay._run import content_hash, policy_hash
from shipyard.store import ReplayRunRow, transaction

__all__ = ["Activated", "activate_policy"]


@dataclass(frozen=True, kw_only=True)
class Activated:
    target: Path
    """The live policy file that now holds the candidate."""
    policy_hash: str
    """The digest of the live policy set now."""
    actor: str
    principal: str
    """The authenticated person who activated it (``actor`` unless acting for another)."""


def activate_policy(
    rt: Runtime,
    *,
    candidate: Path,
    data: bytes,
    replay_id: str,
    report: Path,
    replaces: Path | None,
    accept_regressions: bool,
    actor: str,
    principal: str = "",
) -> Activated:
    """Replace a live policy file with ``data`` (the bytes of ``candidate``, read once).

    The live policies must permit ``activate_policy`` to ``principal`` (the authenticated
    person; '' means ``actor``) on the file replaced, before anything changes: a refusal is
    audited. The replay's own record decides, not the report file: it must have been made in
    this project, for exactly this policy set against exactly today's, without regressions
    (unless ``accept_regressions``). The new set must load; the file is switched atomically.
    """
    principal = principal.strip() or actor
    run, target, live = _vetted(rt, candidate, data, replay_id, report, replaces)
    regressions = list(run.report.get("regressions", []))
    verdict = _may_activate(rt, target, principal, len(regressions), accept_regressions)
    if regressions and not accept_regressions:
        raise StateError(
            f"replay {run.id} lists regressions: " + "; ".join(regressions),
            hint="fix the policy and replay again, or pass --accept-regressions",
        )
    claimed = str(run.candidate["policy_hash"])
    reason = f"replay {run.id}: {claimed[:19]} replaces {run.baseline['policy_hash'][:19]}"
    detail: dict[str, Any] = {"replay": run.id, "regressions": regressions}
    detail |= {"principal": principal, "policy": verdict.reason()}
    _switch(rt, target, live, data, actor=actor, reason=reason, detail=detail)
    return Activated(target=target, policy_hash=claimed, actor=actor, principal=principal)


def _may_activate(
    rt: Runtime, target: Path, principal: str, regressions: int, accept_regressions: bool
) -> Verdict:
    """The live policies' leave for ``principal`` to replace ``target`` (Cedar
    ``activate_policy``); a refusal is audited and raised as PolicyDenied."""
    try:
        name = str(target.relative_to(rt.project.root.resolve()))
    except ValueError:  # a policy file outside the project's folder: its full path
        name = str(target)
    ref, found = entities.policy_file(name)
    subject = govern.Subject(uid=ref, entities=found, label=f"policy {name}")
    context = {"regressions": regressions, "accept_regressions": accept_regressions}
    request = govern.person_request(rt, principal, "activate_policy", subject, context)
    return govern.require(rt, request, actor=principal, subject=subject)


def _vetted(
    rt: Runtime, candidate: Path, data: bytes, replay_id: str, report: Path, replaces: Path | None
) -> tuple[ReplayRunRow, Path, list[Path]]:
    """The replay's record, the live file ``data`` replaces, and the live files, once the
    record shows the replay was made for exactly this candidate against exactly today's."""
    with rt.sessions() as session:
        run = session.get(ReplayRunRow, str(replay_id))
    if run is None:  # the record, not the file, is what counts
        raise StateError(
            f"{report} names replay {replay_id}, which this project has no record of",
            hint="replay it in this project: shipyard replay --policy FILE --out REPORT",
        )
    live = list(rt.project.policy_files)
    if not live:
        raise StateError(
            "the project runs on Shipyard's built-in policy: there is no file to replace",
            hint="name your policy files in shipyard.toml's [policy] files first",
        )
    if run.candidate.get("config") != str(rt.project.config_path):
        raise StateError(
            f"replay {run.id} also tried another configuration ({run.candidate.get('config')})",
            hint="replay the policy alone against this project: shipyard replay --policy FILE",
        )
    if replaces is None:
        if len(live) != 1:
            raise InputError(
                f"which policy file does {candidate} replace?",
                hint="pass --replaces, one of: " + ", ".join(map(str, live)),
            )
        replaces = live[0]
    target = replaces.resolve()
    if target not in live:
        raise InputError(
            f"{replaces} is not one of the project's policy files",
            hint="[policy] files: " + ", ".join(map(str, live)),
        )
    if policy_hash(live) != run.baseline.get("policy_hash"):
        raise StateError(
            f"replay {run.id} was made against other live policies than today's",
            hint="replay again against the current policies",
        )
    contents = [data if p == target else p.read_bytes() for p in live]
    if content_hash(contents) != run.candidate.get("policy_hash"):
        raise StateError(
            f"replay {run.id} was produced for another policy version than {candidate}",
            hint=f"replay {candidate} itself: shipyard replay --policy {candidate} --out ...",
        )
    return run, target, live


def _switch(
    rt: Runtime,
    target: Path,
    live: list[Path],
    data: bytes,
    *,
    actor: str,
    reason: str,
    detail: dict[str, Any],
) -> None:
    """Stage ``data`` beside ``target`` with its mode, check the new set loads, audit, then
    replace the live file atomically (the staged copy never lingers)."""
    staged = target.with_name(f".{target.name}.activating")
    staged.write_bytes(data)
    try:
        os.chmod(staged, target.stat().st_mode & 0o7777)
        Policies([*(p for p in live if p != target), staged])  # valid, or file and line
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        with transaction(rt.sessions) as session:  # on the record, then the switch
            govern.record(
                session,
                actor=actor,
                action="activate_policy",
                subject=f"policy {target.name}",
                decision="done",
                reason=reason,
                detail=detail,
            )
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
