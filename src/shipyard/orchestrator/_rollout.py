"""The canary controller: a release's stages as durable workflow steps.

For a job kind whose target has a ``rollout`` plan, the release is::

    deploy (candidate beside the live version, no traffic)
    for each stage below 100 %: shift the weight, then every interval until a verdict:
        run the probes, read both arms' traffic by the gateway's time buckets, advance the
        stage's bake clock (release.BakeClock: only watched time counts), analyse
        (release.analyse), and act on a person's pause / resume / promote / rollback
    -> promote (the publish tool, journalled)   or   -> roll back, compensate, close

Waiting is ``DBOS.sleep``, so a rollout survives a worker's restart mid-bake (it goes on
with the step it was at), and a paused rollout stays paused. The stage records, verdicts
and the numbers behind them are kept on the release row; a rollback records when the
failure was detected and when traffic was all back on the baseline (the time to recover).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard._crash import crashpoint
from shipyard.config import RolloutSettings
from shipyard.errors import ShipyardError, StateError
from shipyard.generate import render
from shipyard.jobs import JobKind
from shipyard.model import ReleaseState, TaskState
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator import _notify as notify
from shipyard.orchestrator._names import WAITING_FOR_GATEWAY
from shipyard.orchestrator._runtime import Runtime, current_runtime
from shipyard.orchestrator._stage import _task, sleep, stage, step
from shipyard.release import Arm, BakeClock, Bucket, ProbeTally, Rules, analyse
from shipyard.store import (
    ReleaseRow,
    ReleaseSampleRow,
    StepRow,
    set_task_state,
    transaction,
)

__all__ = [
    "COMMANDS",
    "canary",
    "gateway_info",
    "plan_of",
    "probe_specs",
    "run_probe",
]

COMMANDS = ("pause", "resume", "promote", "rollback")


def _now() -> datetime:
    return datetime.now(UTC)


def plan_of(rt: Runtime, kind: JobKind) -> RolloutSettings | None:
    """The rollout plan of a job kind's release, or None to release at once."""
    if kind.release is None:
        return None
    return rt.project.settings.targets[kind.release.target].rollout


def gateway_info(rt: Runtime, target: str = "") -> dict[str, Any] | None:
    """Where ``shipyard serve`` listens and its probe token, if it is up (and serves
    ``target``, when one is named)."""
    path = rt.project.state_dir / "gateway.json"
    try:
        info = dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if target and target not in info.get("targets", []):
        return None
    try:
        reply = httpx.get(f"{info['url']}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return info if reply.status_code == 200 else None


def _release_row(session: Session, task_id: str) -> ReleaseRow:
    row = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
    if row is None:
        raise ShipyardError(f"task {task_id} has no release record")
    return row


def probe_specs(kind: JobKind, inputs: dict[str, Any], url_path: str) -> list[dict[str, Any]]:
    """The job kind's probes for a release answering at ``url_path``, rendered with its
    inputs (what the rollout keeps on the release record and the monitor sends)."""
    if kind.release is None:
        return []
    where = str(kind.folder)
    return [
        {
            "name": f"{p.method} {url}",
            "url": url,
            "method": p.method,
            "body": p.body,
            "status": p.status,
            "contains": render(p.contains, inputs, name="probe", where=where),
            "max_ms": p.max_ms,
        }
        for p in kind.release.probes
        for url in [url_path + render(p.path, inputs, name="probe", where=where)]
    ]


# -- steps --------------------------------------------------------------------------------


@step("shipyard.deploy")
def deploy_step(task_id: str) -> dict[str, Any]:
    """Put the candidate beside the live version; ``busy`` when its path has another."""
    rt = current_runtime()
    with rt.sessions() as session:
        task = _task(session, task_id)
        kind = rt.jobs.get(task.job_kind)
        inputs, artifact_id = dict(task.inputs), str(task.artifact_id)
    plan = plan_of(rt, kind)
    if kind.release is None or plan is None:
        raise ShipyardError(f"job kind {kind.name!r} has no rollout plan")
    where = str(kind.folder)
    path = render(kind.release.path, inputs, name="path", where=where)
    target = rt.target(kind.release.target)
    try:
        deployed = target.deploy(
            key=task_id,
            path=path,
            files=rt.artifacts.read(rt.artifacts.get(artifact_id)),
            title=str(inputs.get("name", task.input_key)),
        )
    except StateError as exc:
        if "busy_with" in exc.details:
            return {"busy": exc.details["busy_with"], "interval": plan.interval_seconds}
        raise
    probes = probe_specs(kind, inputs, deployed.url_path)
    with stage(rt, task_id, "deploy") as record, transaction(rt.sessions) as session:
        row = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
        if row is None:
            session.add(
                ReleaseRow(
                    task_id=task_id,
                    artifact_id=artifact_id,
                    target=target.name,
                    path=deployed.url_path,
                    version=deployed.version[:40],
                    state=ReleaseState.CANARY.value,
                    released_at=_now(),
                    plan={**plan.model_dump(), "probes": probes},
                    verdicts=[],
                )
            )
            govern.record(
                session,
                actor=f"agent {kind.domain}",
                action="deploy",
                subject=f"target {target.name}",
                decision="done",
                reason=f"candidate at {deployed.url_path}, no traffic yet",
                task_id=task_id,
            )
        set_task_state(session, task_id, TaskState.RELEASING)
        record["summary"] = (
            f"candidate on {target.name} at {deployed.url_path}; stages "
            + " → ".join(f"{w:g}%" for w in plan.stages)
        )
    return {"stages": len(plan.stages), "interval": plan.interval_seconds}


@step("shipyard.shift")
def shift_step(task_id: str, index: int) -> None:
    """Give the candidate the stage's share of traffic; the stage's bake starts now.

    Before the first stage the candidate is warmed through the gateway (a handler's process
    started and its first requests served), so its start-up is not measured as slowness.
    """
    rt = current_runtime()
    if index == 0:
        _warm(rt, task_id)
    with transaction(rt.sessions) as session:
        row = _release_row(session, task_id)
        if not ReleaseState(row.state).baking:
            return
        weight = float(row.plan["stages"][index])
        rt.target(row.target).shift(task_id, weight)
        now = _now()
        row.stage, row.weight, row.stage_started_at = index, weight, now
        row.verdicts = [
            *[v for v in row.verdicts if v["stage"] != index],
            {"stage": index, "weight": weight, "started_at": now.isoformat(), "outcome": "wait"},
        ]
        row.reason = ""


@step("shipyard.watch")
def watch_step(task_id: str, index: int) -> dict[str, str]:
    """One look at a baking stage: ``next``, ``wait``, ``paused``, ``promote`` or
    ``rollback`` (the rollback itself is done here, traffic first), and why."""
    rt = current_runtime()
    outcome = _watch(rt, task_id, index)
    with rt.sessions() as session:
        reason = _release_row(session, task_id).reason
    return {"outcome": outcome, "reason": reason}


def _watch(rt: Runtime, task_id: str, index: int) -> str:
    crashpoint(f"canary.watch{index}")
    with transaction(rt.sessions) as session:
        row = _release_row(session, task_id)
        command, by = row.command, row.command_by
        row.command = ""
        state, plan, target_name = row.state, dict(row.plan), row.target
        started = row.stage_started_at or _now()
        verdicts = list(row.verdicts)
    if state in (ReleaseState.ROLLED_BACK, ReleaseState.LIVE):
        return "rollback" if state == ReleaseState.ROLLED_BACK else "promote"
    if command == "rollback":
        return _roll_back(rt, task_id, f"rolled back by {by}", actor=by, verdict=None)
    if command == "promote":
        _note(rt, task_id, index, "promote", f"promoted by {by} at {plan['stages'][index]:g}%")
        return "promote"
    if command == "pause" or (state == ReleaseState.PAUSED and command != "resume"):
        if state != ReleaseState.PAUSED:
            _set(rt, task_id, state=ReleaseState.PAUSED.value, reason=f"paused by {by}")
        return "paused"
    if command == "resume":  # the bake starts again: its verdict rests on what comes after
        with transaction(rt.sessions) as session:
            row = _release_row(session, task_id)
            row.state, row.reason, row.stage_started_at = ReleaseState.CANARY.value, "", _now()
            row.verdicts = [
                {k: v for k, v in verdict.items() if k != "probes"}
                if verdict["stage"] == index
                else verdict
                for verdict in row.verdicts
            ]
        return "wait"
    gateway = gateway_info(rt, target_name)
    if gateway is None:
        _set(
            rt,
            task_id,
            reason=f"{WAITING_FOR_GATEWAY}{target_name}: run `shipyard serve`",
            stage_started_at=_now(),
        )
        return "wait"
    return _look(rt, task_id, index, plan, gateway, started, verdicts)


def _look(
    rt: Runtime,
    task_id: str,
    index: int,
    plan: dict[str, Any],
    gateway: dict[str, Any],
    started: datetime,
    verdicts: list[dict[str, Any]],
) -> str:
    """Probe, read both arms' traffic since the stage began, advance the stage's bake clock,
    analyse, record the verdict, and act on it: ``next`` (passed), ``rollback`` (failed,
    rolled back) or ``wait``."""
    current: dict[str, Any] = next((v for v in verdicts if v["stage"] == index), {})
    tally = ProbeTally.from_dict(current.get("probes", {}))
    for probe in plan["probes"]:
        tally.record(probe["name"], run_probe(gateway, probe))
    candidate, baseline = _arms(rt, task_id, started)
    now = _now()
    clock = _clock(current, started).look(now.timestamp(), interval=plan["interval_seconds"])
    longest = plan["max_bake_seconds"]
    longest = 3 * plan["bake_seconds"] if longest is None else longest
    verdict = analyse(
        candidate,
        baseline,
        _rules(plan),
        probes=tally if plan["probes"] else None,
        baked=clock.baked_s >= plan["bake_seconds"],
        overdue=clock.baked_s >= max(longest, plan["bake_seconds"]),
    )
    record = {
        **current,
        **verdict.to_dict(),
        "stage": index,
        "weight": float(plan["stages"][index]),
        "probes": tally.to_dict(),
        "elapsed_s": round(clock.baked_s, 2),
        "wall_s": round((now - started).total_seconds(), 2),
        "looked_at": clock.looked_at,
    }
    with transaction(rt.sessions) as session:
        row = _release_row(session, task_id)
        row.verdicts = [*[v for v in row.verdicts if v["stage"] != index], record]
        row.reason = "; ".join(verdict.reasons) if verdict.outcome == "wait" else row.reason
    if verdict.outcome == "fail":
        return _roll_back(
            rt, task_id, "; ".join(verdict.reasons), actor=f"agent {_domain(rt, task_id)}",
            verdict=record,
        )  # fmt: skip
    if verdict.outcome == "pass":
        _note(rt, task_id, index, "pass", "; ".join(verdict.reasons), started=started)
        return "next"
    return "wait"


def _rules(plan: dict[str, Any]) -> Rules:
    return Rules(
        min_requests=plan["min_requests"],
        max_error_rate_increase=plan["max_error_rate_increase"],
        max_p95_ratio=plan["max_p95_ratio"],
        confidence=plan["confidence"],
        probe_failures=plan["probe_failures"],
        low_traffic=plan["low_traffic"],
    )


def _clock(current: dict[str, Any], started: datetime) -> BakeClock:
    """The stage's bake clock as its verdict record left it; a fresh one when the stage
    (re)started after the last look: a shift, a resume, or a gateway that was away."""
    looked, start = current.get("looked_at"), started.timestamp()
    if looked is None or float(looked) < start:
        return BakeClock(baked_s=0.0, looked_at=start)
    return BakeClock(baked_s=float(current.get("elapsed_s", 0.0)), looked_at=float(looked))


def _domain(rt: Runtime, task_id: str) -> str:
    with rt.sessions() as session:
        return _task(session, task_id).domain


def _set(rt: Runtime, task_id: str, **values: Any) -> None:
    with transaction(rt.sessions) as session:
        session.execute(update(ReleaseRow).where(ReleaseRow.task_id == task_id).values(**values))


def _note(
    rt: Runtime,
    task_id: str,
    index: int,
    outcome: str,
    summary: str,
    *,
    started: datetime | None = None,
) -> None:
    """The stage's verdict as a step of the task (what ``shipyard show`` lists)."""
    with transaction(rt.sessions) as session:
        row = _release_row(session, task_id)
        weight = float(row.plan["stages"][index])
        name = f"canary {weight:g}%"
        now = _now()
        if (
            session.scalar(select(StepRow).where(StepRow.task_id == task_id, StepRow.stage == name))
            is None
        ):
            session.add(
                StepRow(
                    task_id=task_id,
                    stage=name,
                    attempt=0,
                    status="done" if outcome != "fail" else "failed",
                    runs=1,
                    started_at=started or row.stage_started_at or now,
                    finished_at=now,
                    summary=f"{outcome}: {summary}",
                    detail={"verdict": next((v for v in row.verdicts if v["stage"] == index), {})},
                )
            )
        row.verdicts = [
            {**v, "outcome": outcome} if v["stage"] == index else v for v in row.verdicts
        ]


def _roll_back(
    rt: Runtime, task_id: str, reason: str, *, actor: str, verdict: dict[str, Any] | None
) -> str:
    """Traffic back to the baseline first; then the record says when, why and how fast."""
    detected = _now()
    with rt.sessions() as session:
        row = _release_row(session, task_id)
        target_name, index = row.target, row.stage
        if row.state == ReleaseState.ROLLED_BACK:
            return "rollback"
    rt.target(target_name).abort(task_id)
    restored = _now()
    with transaction(rt.sessions) as session:
        row = _release_row(session, task_id)
        row.state, row.reason, row.weight = ReleaseState.ROLLED_BACK.value, reason, 0.0
        row.detected_at, row.restored_at = detected, restored
        row.rolled_back_at = row.finished_at = restored
        govern.record(
            session,
            actor=actor,
            action="rollback",
            subject=f"target {target_name}",
            decision="done",
            reason=reason,
            task_id=task_id,
            detail={
                "stage": index,
                "recovered_ms": round((restored - detected).total_seconds() * 1000, 1),
                "verdict": verdict or {},
            },
        )
        notify.rolled_back(
            rt,
            session,
            _task(session, task_id),
            reason=reason,
            by=actor,
            path=row.path,
            version=row.version,
            stage=index,
            weight=float(row.plan["stages"][index]) if index >= 0 else 0.0,
            recovered_ms=round((restored - detected).total_seconds() * 1000, 1),
            verdict=_verdict_summary(verdict),
        )
    if index >= 0:
        _note(rt, task_id, index, "fail", reason)
    return "rollback"


def _verdict_summary(verdict: dict[str, Any] | None) -> dict[str, Any]:
    """The failed stage's verdict as a notification carries it: the reasons and the figures
    behind them, not the probes' tallies."""
    if not verdict:
        return {}
    return {
        k: v
        for k, v in verdict.items()
        if k == "reasons" or isinstance(v, str | int | float | bool | None)
    }


_WARM_REQUESTS = 5


def _warm(rt: Runtime, task_id: str) -> None:
    with rt.sessions() as session:
        row = _release_row(session, task_id)
        target, url = row.target, row.path
        probes = list(row.plan.get("probes", []))
    gateway = gateway_info(rt, target)
    if gateway is None:
        return  # the first look waits for a gateway anyway
    warm = probes[0] if probes else {"url": url, "method": "GET", "body": None}
    for _ in range(_WARM_REQUESTS):
        run_probe(gateway, {**warm, "status": 0, "contains": "", "max_ms": 30_000})


def run_probe(
    gateway: dict[str, Any], probe: dict[str, Any], *, arm: str = "candidate"
) -> str | None:
    """None when the ``arm`` (the candidate, or the live version: ``baseline``) answered the
    probe as expected; else what went wrong."""
    started = time.perf_counter()
    try:
        reply = httpx.request(
            probe["method"],
            gateway["url"] + probe["url"],
            json=probe["body"] if probe["method"] == "POST" else None,
            headers={"X-Shipyard-Probe": gateway["token"], "X-Shipyard-Arm": arm},
            timeout=probe["max_ms"] / 1000 + 1,
            follow_redirects=True,
        )
    except httpx.HTTPError as exc:
        return f"no answer: {exc}"
    ms = (time.perf_counter() - started) * 1000
    if reply.status_code != probe["status"]:
        return f"status {reply.status_code}, expected {probe['status']}"
    if probe["contains"] and probe["contains"] not in reply.text:
        return f"the body lacks {probe['contains'][:60]!r}"
    if ms > probe["max_ms"]:
        return f"took {ms:.0f} ms (limit {probe['max_ms']:g} ms)"
    return None


def _arms(rt: Runtime, task_id: str, since: datetime) -> tuple[Arm, Arm]:
    """Both arms' traffic since ``since``, by the gateway's time buckets (its flushes)."""
    with rt.sessions() as session:
        rows = session.scalars(
            select(ReleaseSampleRow)
            .where(ReleaseSampleRow.task_id == task_id, ReleaseSampleRow.at >= since)
            .order_by(ReleaseSampleRow.at, ReleaseSampleRow.id)
        ).all()
    buckets: dict[str, list[Bucket]] = {"candidate": [], "baseline": []}
    for row in rows:
        buckets.setdefault(row.arm, []).append(
            Bucket(
                at=row.at.timestamp(),
                requests=row.requests,
                errors=row.errors,
                latencies=list(row.latencies),
            )
        )
    return Arm.of(buckets["candidate"]), Arm.of(buckets["baseline"])


# -- the controller (workflow code: decisions come only from step results) ----------------


def canary(task_id: str) -> tuple[str, str]:
    """Run the rollout: (``promote`` or ``rollback``, the reason)."""
    while True:
        deployed = deploy_step(task_id)
        if "busy" not in deployed:
            break
        sleep(float(deployed["interval"]))  # another release of this path is baking
    interval = float(deployed["interval"])
    for index in range(int(deployed["stages"]) - 1):  # the last stage (100 %) is promotion
        shift_step(task_id, index)
        while True:
            sleep(interval)
            look = watch_step(task_id, index)
            if look["outcome"] in ("promote", "rollback"):
                return look["outcome"], look["reason"]
            if look["outcome"] == "next":
                break
    return "promote", ""
