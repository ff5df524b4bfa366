"""The monitor: a durable workflow per watched target that keeps watching what is live.

::

    shipyard.monitor (id monitor.TARGET.GENERATION), a round every interval_seconds:
        for each live path of the target (a path with a rollout baking on it is the
        rollout's to watch):
            probe the live version through the gateway; read the path's window and its
            baseline from the gateway's samples, and the other live paths' at the same
            moments; judge them (release.watch)
            a new anomaly opens an incident (one open per path and cause)
            on_anomaly = "rollback": withdraw the release (traffic first, then the records,
                as a person's rollback does) and resolve its incidents once traffic is back
            a cause that recovered resolves its incident
    until nothing is live (the monitor stops; a promotion starts the next generation), or
    for TERM_ROUNDS rounds, when the next generation takes over so that no workflow's
    history grows without end.

The state a round needs (each path's probe results, its last verdict) is kept on the
``monitors`` row, and incidents in ``incidents``, so a round is the same whichever worker
runs it and however often it was restarted. A round that fails (the database away) is
noted and the next one tries again. Incidents are ``_incidents``'; every one opened and
resolved, and every rollback, is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID
from dbos import error as dbos_errors
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shipyard.config import MonitorSettings
from shipyard.model import ReleaseState
from shipyard.orchestrator import _notify as notify
from shipyard.orchestrator._incidents import (
    close_incident,
    may_open,
    open_incident,
    open_incidents,
)
from shipyard.orchestrator._live_samples import (
    counts as _counts,
)
from shipyard.orchestrator._live_samples import (
    keep_after as _keep_after,
)
from shipyard.orchestrator._live_samples import (
    prune as _prune,
)
from shipyard.orchestrator._live_samples import (
    samples as _samples,
)
from shipyard.orchestrator._live_samples import (
    served_live_keys as _served_live_keys,
)
from shipyard.orchestrator._live_samples import (
    slots as _slots,
)
from shipyard.orchestrator._live_samples import (
    split as _split,
)
from shipyard.orchestrator._names import MONITOR_WORKFLOW, monitor_workflow_id
from shipyard.orchestrator._rollout import gateway_info, probe_specs, run_probe
from shipyard.orchestrator._runtime import Runtime, current_runtime
from shipyard.orchestrator._stage import sleep, step
from shipyard.orchestrator._withdraw import Withdrawn, withdraw_live
from shipyard.release import (
    Arm,
    Health,
    ProbeTally,
    WatchRules,
    watch,
)
from shipyard.store import (
    IncidentRow,
    MonitorRow,
    ReleaseRow,
    TaskRow,
    insert_ignore,
    lock_rows,
    transaction,
)

__all__ = [
    "TERM_ROUNDS",
    "claim_step",
    "ensure_monitors",
    "monitor_workflow",
    "start_monitor",
]

TERM_ROUNDS = 120
"""Rounds one workflow runs before the next generation takes over."""
WATCHING, STOPPED = "watching", "stopped"
_log = logging.getLogger("shipyard.monitor")


def _now() -> datetime:
    return datetime.now(UTC)


# -- starting and stopping ------------------------------------------------------------------


def _claim(rt: Runtime, target: str) -> int:
    """The generation of ``target``'s monitor to run (0: it is not watched): the one
    watching, or the next one when it stopped or its workflow ended without saying so.

    Runs under the target's named lock, as does a round's decision to stop, so a promotion
    that lands while the monitor stops either is seen by that round or finds it stopped.
    """
    settings = rt.project.settings.targets.get(target)
    if settings is None or settings.watching() is None:
        return 0
    with transaction(rt.sessions) as session:
        lock_rows(session, f"monitor:{target}")
        insert_ignore(
            session,
            MonitorRow,
            {"target": target, "generation": 0, "state": STOPPED, "started_at": _now(),
             "note": "", "paths": {}},
        )  # fmt: skip
        row = session.get(MonitorRow, target)
        if row is None:  # pragma: no cover - inserted just above, in this transaction
            return 0
        if row.state == WATCHING and not _ended(monitor_workflow_id(target, row.generation)):
            return row.generation
        row.generation += 1
        row.state, row.started_at, row.stopped_at = WATCHING, _now(), None
        row.note = "starting"
        return row.generation


def _ended(workflow_id: str) -> bool:
    """True when the workflow ran and is over (an ended workflow's id never runs again)."""
    status = DBOS.get_workflow_status(workflow_id)
    return status is not None and status.status not in ("PENDING", "ENQUEUED")


def start_monitor(rt: Runtime, target: str) -> str:
    """Start ``target``'s monitor, or find the one running (its workflow id; '' when the
    target is not watched). Call it outside a workflow (a worker at launch)."""
    generation = _claim(rt, target)
    if not generation:
        return ""
    workflow_id = monitor_workflow_id(target, generation)
    with SetWorkflowID(workflow_id):
        DBOS.start_workflow(monitor_workflow, target, generation)
    return workflow_id


def ensure_monitors(rt: Runtime) -> list[str]:
    """Start the monitor of every watched target with a live release (a worker at launch)."""
    with rt.sessions() as session:
        targets = session.scalars(
            select(ReleaseRow.target).where(ReleaseRow.state == ReleaseState.LIVE).distinct()
        ).all()
    started = []
    for target in sorted(targets):
        settings = rt.project.settings.targets.get(target)
        if settings is not None and settings.watching() is not None:
            workflow_id = start_monitor(rt, target)
            if workflow_id:
                started.append(workflow_id)
    return started


@step("shipyard.monitor_claim")
def claim_step(target: str) -> int:
    """The generation of ``target``'s monitor a workflow should start (0: none)."""
    return _claim(current_runtime(), target)


@step("shipyard.monitor_next")
def _next_step(target: str, generation: int) -> int:
    """Hand over to the next generation, unless this one was superseded (0)."""
    rt = current_runtime()
    with transaction(rt.sessions) as session:
        lock_rows(session, f"monitor:{target}")
        done = session.execute(
            update(MonitorRow)
            .where(
                MonitorRow.target == target,
                MonitorRow.generation == generation,
                MonitorRow.state == WATCHING,
            )
            .values(generation=generation + 1)
        )
    return generation + 1 if done.rowcount else 0  # type: ignore[attr-defined]


@DBOS.workflow(name=MONITOR_WORKFLOW)
def monitor_workflow(target: str, generation: int) -> str:
    """Watch ``target``'s live releases round after round (see the module's docstring)."""
    for _ in range(TERM_ROUNDS):
        look = _round_step(target, generation)
        if look["stop"]:
            return str(look["why"])
        sleep(float(look["interval"]))
    successor = _next_step(target, generation)
    if successor:
        with SetWorkflowID(monitor_workflow_id(target, successor)):
            DBOS.start_workflow(monitor_workflow, target, successor)
    return f"handed over to generation {successor}" if successor else "superseded"


# -- a round --------------------------------------------------------------------------------


@step("shipyard.monitor_round")
def _round_step(target: str, generation: int) -> dict[str, Any]:
    """One round; ``stop`` (and why) when the monitor is over, else when to look again."""
    rt = current_runtime()
    try:
        return _round(rt, target, generation)
    except dbos_errors.DBOSException:
        raise
    except Exception as exc:  # the database or a target away: the next round tries again
        _log.exception("monitor of %s: the round failed", target)
        settings = rt.project.settings.targets.get(target)
        watching = settings.watching() if settings is not None else None
        try:
            _note(rt, target, generation, f"the last round failed: {type(exc).__name__}: {exc}")
        except Exception:
            _log.exception("monitor of %s: could not record the failure", target)
        return {"stop": False, "interval": watching.interval_seconds if watching else 30.0}


@dataclass(frozen=True, kw_only=True)
class _Look:
    """What one round looks with."""

    target: str
    settings: MonitorSettings
    gateway: dict[str, Any]
    """``gateway.json``: where to probe, and which targets it serves."""
    now: datetime
    window_start: datetime


@dataclass(frozen=True, kw_only=True)
class _Live:
    task_id: str
    path: str
    job_kind: str
    inputs: dict[str, Any]
    promoted_at: datetime
    probes: list[dict[str, Any]]


def _round(rt: Runtime, target: str, generation: int) -> dict[str, Any]:
    settings = rt.project.settings.targets.get(target)
    watching = settings.watching() if settings is not None else None
    with transaction(rt.sessions) as session:
        lock_rows(session, f"monitor:{target}")
        row = session.get(MonitorRow, target)
        if row is None or row.generation != generation or row.state != WATCHING:
            return {"stop": True, "why": "superseded"}
        live, baking = _live_paths(session, target)
        if watching is None or not live:
            row.state, row.stopped_at = STOPPED, _now()
            row.note = "not watched any more" if watching is None else "nothing is live"
            return {"stop": True, "why": row.note}
        known = dict(row.paths or {})
    gateway = gateway_info(rt, target)
    if gateway is None:
        waiting = f"waiting for a gateway serving {target}: run `shipyard serve`"
        _note(rt, target, generation, waiting)
        return {"stop": False, "interval": watching.interval_seconds}
    paths: dict[str, Any] = {}
    outcomes: list[str] = []
    for release in live:
        if release.path in baking:
            paths[release.path] = {
                "task": release.task_id,
                "outcome": "rollout",
                "reasons": ["a rollout is baking on this path: it watches it"],
            }
            continue
        now = _now()
        look = _Look(
            target=target,
            settings=watching,
            gateway=gateway,
            now=now,
            window_start=now - timedelta(seconds=watching.window_seconds),
        )
        state = _watch_path(rt, look, release, known.get(release.path, {}))
        paths[release.path] = state
        outcomes.append(str(state["outcome"]))
    counts = {o: outcomes.count(o) for o in ("ok", "thin", "anomaly", "rolled_back")}
    note = (
        f"{len(live)} live path(s): {counts['ok']} healthy, {counts['thin']} short of traffic, "
        f"{counts['anomaly']} anomalous, {counts['rolled_back']} rolled back"
        + (f", {len(baking & {r.path for r in live})} under a rollout" if baking else "")
    )
    with transaction(rt.sessions) as session:
        row = session.get(MonitorRow, target)
        if row is not None and row.generation == generation:
            row.paths, row.note, row.checked_at = paths, note, _now()
        _prune(session, [r.task_id for r in live], _keep_after(session, target, watching))
    return {"stop": False, "interval": watching.interval_seconds}


def _note(rt: Runtime, target: str, generation: int, note: str) -> None:
    with transaction(rt.sessions) as session:
        session.execute(
            update(MonitorRow)
            .where(MonitorRow.target == target, MonitorRow.generation == generation)
            .values(note=note, checked_at=_now())
        )


def _live_paths(session: Session, target: str) -> tuple[list[_Live], set[str]]:
    """The target's live releases, one per path, and the paths with a rollout baking."""
    rows = session.execute(
        select(ReleaseRow, TaskRow.job_kind, TaskRow.inputs)
        .join(TaskRow, TaskRow.id == ReleaseRow.task_id)
        .where(
            ReleaseRow.target == target,
            ReleaseRow.state.in_((ReleaseState.LIVE, ReleaseState.CANARY, ReleaseState.PAUSED)),
        )
        .order_by(ReleaseRow.id)
    ).all()
    live: dict[str, _Live] = {}
    baking: set[str] = set()
    for release, job_kind, inputs in rows:
        if release.state != ReleaseState.LIVE:
            baking.add(release.path)
            continue
        live[release.path] = _Live(  # the newest live release of a path answers there
            task_id=release.task_id,
            path=release.path,
            job_kind=job_kind,
            inputs=dict(inputs),
            promoted_at=release.finished_at or release.released_at,
            probes=list((release.plan or {}).get("probes", [])),
        )
    return list(live.values()), baking


def _probes(rt: Runtime, release: _Live) -> list[dict[str, Any]]:
    """The release's probes: as its rollout rendered them, else rendered from its job kind."""
    if release.probes:
        return release.probes
    if release.job_kind not in rt.jobs.names():
        return []
    return probe_specs(rt.jobs.get(release.job_kind), release.inputs, release.path)


def _rules(settings: MonitorSettings) -> WatchRules:
    return WatchRules(
        min_requests=settings.min_requests,
        max_error_rate_increase=settings.max_error_rate_increase,
        max_p95_ratio=settings.max_p95_ratio,
        confidence=settings.confidence,
        probe_failures=settings.probe_failures,
    )


def _watch_path(rt: Runtime, look: _Look, release: _Live, known: dict[str, Any]) -> dict[str, Any]:
    """Probe, read, judge and act on one live path; its state for the monitor's row."""
    same = known.get("task") == release.task_id
    tally = ProbeTally.from_dict(known.get("probes", {}) if same else {})
    for probe in _probes(rt, release):
        tally.record(probe["name"], run_probe(look.gateway, probe, arm="baseline"))
    with rt.sessions() as session:
        health = _health(session, look, release, tally)
    recovered = dict(known.get("recovered", {}) if same else {})
    for cause in health.recovered:
        recovered[cause] = look.now.isoformat()
    outcome = _act(rt, look, release, health, recovered)
    return {
        "task": release.task_id,
        "outcome": outcome,
        "reasons": [f.reason for f in health.anomalies] or list(health.reasons),
        "probes": tally.to_dict(),
        "recovered": recovered,
        "window": health.numbers["window"],
        "baseline": health.numbers["baseline"],
        "checked_at": look.now.isoformat(),
    }


def _frozen_at(session: Session, target: str, release: _Live) -> datetime | None:
    """While an incident of this release is open, its baseline ends where the incident's
    window began: the time it went wrong never becomes what it is compared with."""
    found = session.scalar(
        select(func.min(IncidentRow.window_start)).where(
            IncidentRow.target == target,
            IncidentRow.path == release.path,
            IncidentRow.task_id == release.task_id,
            IncidentRow.state == "open",
        )
    )
    return found.astimezone(UTC) if isinstance(found, datetime) else None


def _health(session: Session, look: _Look, release: _Live, tally: ProbeTally) -> Health:
    """The path's verdict: its window and baseline, the other live paths' at the same moments."""
    keys = _served_live_keys(session, look.gateway)
    window, others_now = _split(
        _samples(session, keys, [(look.window_start, look.now)]), release.task_id
    )
    frozen = _frozen_at(session, look.target, release)
    baseline_end = min(look.window_start, frozen) if frozen else look.window_start
    baseline_start = max(
        release.promoted_at, baseline_end - timedelta(minutes=look.settings.baseline_minutes)
    )
    requests, errors = _counts(session, release.task_id, baseline_start, baseline_end)
    sampled, others_before = _split(
        _samples(session, keys, _slots(baseline_start, baseline_end)), release.task_id
    )
    baseline = Arm(
        requests=requests,
        errors=errors,
        latencies=[ms for b in sampled for ms in b.latencies],
        buckets=tuple(sampled),
    )
    control = (Arm.of(others_now), Arm.of(others_before)) if others_now else None
    probes = tally if tally.streak else None
    return watch(Arm.of(window), baseline, _rules(look.settings), control=control, probes=probes)


# -- incidents and the rollback --------------------------------------------------------------


def _act(
    rt: Runtime, look: _Look, release: _Live, health: Health, recovered: dict[str, str]
) -> str:
    """Open incidents for new anomalies, resolve causes that recovered, and with
    ``on_anomaly = "rollback"`` withdraw the release while an incident of it calls for that;
    the path's outcome (``rolled_back``, else the verdict's)."""
    target, actor = look.target, f"monitor {look.target}"
    rollback = look.settings.on_anomaly == "rollback"
    where = {"target": target, "path": release.path, "task_id": release.task_id}
    with transaction(rt.sessions) as session:
        lock_rows(session, f"incidents:{target}")  # one open incident per path and cause
        for finding in health.anomalies:
            if may_open(session, **where, finding=finding, recovered=recovered):
                incident = open_incident(
                    session,
                    **where,
                    finding=finding,
                    health=health,
                    action="rolled_back" if rollback else "alerted",
                    window_start=look.window_start,
                    detected_at=look.now,
                )
                _announce(rt, session, incident)
        for incident in open_incidents(session, target, release.path):
            if incident.cause in health.recovered:
                note = "recovered: " + "; ".join(health.reasons)
                close_incident(session, incident, by="monitor", actor=actor, at=look.now, note=note)
        calling = [
            f"#{i.id} {i.reason}"
            for i in open_incidents(session, target, release.path)
            if i.task_id == release.task_id and i.action == "rolled_back"
        ]
    if not (rollback and calling):
        return health.outcome
    done = withdraw_live(
        rt,
        release.task_id,
        actor=actor,
        reason="rolled back by the monitor: " + "; ".join(calling),
        detected=look.now,
        then=lambda session, done: _close_rolled_back(session, look, release, done),
    )
    if done is None:  # withdrawn meanwhile (a person, a later release): nothing left to undo
        with transaction(rt.sessions) as session:
            for incident in open_incidents(session, target, release.path):
                if incident.task_id == release.task_id:
                    note = "the release is not live any more"
                    close_incident(
                        session, incident, by="monitor", actor=actor, at=_now(), note=note
                    )
        return health.outcome
    return "rolled_back"


def _announce(rt: Runtime, session: Session, incident: IncidentRow) -> None:
    """The incident.opened notification, in the transaction that opened it."""
    task = session.get(TaskRow, incident.task_id)
    if task is None:
        return
    notify.task_event(
        rt,
        session,
        task,
        type=notify.INCIDENT_OPENED,
        key=f"incident:{incident.id}:opened",
        incident=incident.id,
        path=incident.path,
        cause=incident.cause,
        action=incident.action,
        reason=incident.reason,
        detected_at=incident.detected_at.isoformat(),
        incidents_link="/console/incidents",
    )


def _close_rolled_back(session: Session, look: _Look, release: _Live, done: Withdrawn) -> None:
    """Traffic is back on the version before: the release's incidents are resolved then."""
    note = (
        f"rolled back: traffic on {done.version or 'no version (the path is unrouted)'} "
        f"{done.recovered_ms:g} ms after the rollback was called"
    )
    for incident in open_incidents(session, look.target, release.path):
        if incident.task_id == release.task_id:
            close_incident(
                session,
                incident,
                by="monitor",
                actor=f"monitor {look.target}",
                at=done.restored_at,
                note=note,
            )
