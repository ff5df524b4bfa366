"""Workers: processes that launch DBOS, listen to the domains' queues and run tasks.

Each worker has its own DBOS executor id and a row in ``workers`` (see ``_fleet``). At launch
it takes over what workers that died or left still held, then runs queued tasks until it is
stopped, or, with ``until_idle``, until every task is finished or waiting for a person.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from dbos import DBOS
from dbos import _error as dbos_errors
from sqlalchemy import func, select

from shipyard.errors import ConfigError, StateError
from shipyard.model import ReleaseState, TaskState
from shipyard.observe import Sender
from shipyard.orchestrator import _notify as notify
from shipyard.orchestrator._fleet import Fleet, new_worker_id
from shipyard.orchestrator._govern import require_release_plans
from shipyard.orchestrator._monitor import ensure_monitors
from shipyard.orchestrator._names import MONITOR_WORKFLOW, WAITING_FOR_GATEWAY
from shipyard.orchestrator._queues import (
    dbos_config,
    enqueue_pending,
    queue_name,
    queue_settings,
    system_database,
)
from shipyard.orchestrator._rollout import gateway_info
from shipyard.orchestrator._runtime import Runtime, current_runtime, install_runtime
from shipyard.orchestrator._stage import close_steps, open_steps, steps_under_way
from shipyard.store import ReleaseRow, TaskRow

__all__ = [
    "Idleness",
    "current_fleet",
    "idleness",
    "launch",
    "shutdown",
    "stop_gracefully",
]

_BUSY = (
    TaskState.QUEUED.value,
    TaskState.RUNNING.value,
    TaskState.APPROVED.value,
    TaskState.RESUMING.value,
    TaskState.RELEASING.value,
)

_fleet: Fleet | None = None
_sender: Sender | None = None


def current_fleet() -> Fleet | None:
    """This process's worker membership, while a worker is launched here."""
    return _fleet


def launch(
    rt: Runtime, *, domains: Sequence[str] = (), executor_id: str | None = None
) -> list[str]:
    """Install ``rt`` and launch DBOS on the domains' queues (all domains when empty);
    start sending notifications to the project's ``[notify.NAME]`` endpoints."""
    global _fleet, _sender
    known = rt.project.settings.domains
    chosen = list(domains) or list(known)
    unknown = [d for d in chosen if d not in known]
    if unknown:
        raise ConfigError(
            f"unknown domain(s): {', '.join(unknown)}",
            hint=f"domains in {rt.project.config_path}: {', '.join(known) or '(none)'}",
        )
    rt.check_tiers()  # a tier it cannot call (no key, no such provider) stops it here
    endpoints = notify.endpoints(rt)  # so does an endpoint whose secret is not set
    # so does a job kind that would release at once to a production target
    require_release_plans(rt.project, rt.policies, rt.jobs)
    install_runtime(rt)
    worker_id = executor_id or new_worker_id()
    DBOS.migrate(system_database(rt.project))  # DBOS serializes its own migrations
    fleet = Fleet(rt=rt, worker_id=worker_id, domains=chosen)
    fleet.join()
    open_steps()
    DBOS(config=dbos_config(rt.project, executor_id=worker_id))  # type: ignore[arg-type]
    DBOS.listen_queues([queue_name(d) for d in chosen])
    DBOS.launch()
    for domain in chosen:
        DBOS.register_queue(
            queue_name(domain), on_conflict="always_update", **queue_settings(rt.project, domain)
        )
    _fleet = fleet
    fleet.start()  # takes over dead workers' workflows, then beats
    _sender = notify.start_sender(rt, worker_id, endpoints)  # threads of their own
    # work recorded by a process that died before enqueueing it
    enqueue_pending(rt.project, rt.sessions)
    ensure_monitors(rt)  # every watched target with something live is watched again
    rt.sandbox.warm()  # the zygotes import the check tooling while the first tasks generate
    return chosen


def shutdown(*, drain_seconds: float = 10.0) -> None:
    """Stop DBOS in this process.

    Workflows still running get up to ``drain_seconds`` to reach their end (a task whose
    state is final may still be recording its workflow's result); whatever is in flight
    after that is taken over by a live worker (or the next one to start), from its last
    finished step. Then notifications due now are sent once (what the last steps announced);
    what fails stays in the outbox for the next worker.
    """
    global _fleet, _sender
    deadline = time.monotonic() + drain_seconds
    while time.monotonic() < deadline and _running_workflows():
        time.sleep(0.05)
    notify.stop_sender(_sender, final_pass=True)
    _sender = None
    logging.getLogger("dbos").addFilter(_after_stop)  # a monitor's next sleep, refused
    DBOS.destroy(workflow_completion_timeout_sec=0)
    if _fleet is not None:
        _fleet.leave()
        _fleet = None
    with contextlib.suppress(StateError):  # no runtime installed: nothing to flush
        current_runtime().tracing.flush()
    install_runtime(None)


def stop_gracefully(drain_seconds: float) -> int:
    """SIGTERM: start no new step, let those under way finish, then leave.

    Workflows reaching their next step wait at it; each one's finished steps are
    checkpointed, so a live worker takes it over from there. Returns the steps that were
    still running when ``drain_seconds`` ran out (they run again elsewhere). Notifications
    are sent during the drain; then a POST under way finishes, and the rest wait in the
    outbox for a live worker.
    """
    global _fleet, _sender
    if _fleet is not None:
        _fleet.beat("draining")
    left = close_steps(drain_seconds)
    notify.stop_sender(_sender, final_pass=False)
    _sender = None
    logging.getLogger("dbos").addFilter(_after_stop)
    DBOS.destroy(workflow_completion_timeout_sec=0)
    if _fleet is not None:
        _fleet.leave()
        _fleet = None
    with contextlib.suppress(StateError):
        current_runtime().tracing.flush()
    install_runtime(None)
    return left


def _after_stop(record: logging.LogRecord) -> bool:
    """Once the worker lets its workflows go, DBOS refuses what they try next (a step cut
    short by the drain recording its result, say) and logs each refusal with a traceback.
    Their state is checkpointed and a live worker resumes them: drop that noise, keep the
    rest."""
    error = record.exc_info[1] if record.exc_info else None
    while error is not None:
        if isinstance(error, dbos_errors.DBOSException):
            return False
        error = error.__cause__ or error.__context__
    return True


def _running_workflows() -> int:
    """Workflows of this process still running a step (waiting for a person is not running;
    nor is a monitor, which watches until nothing is live: a live worker resumes it)."""
    if steps_under_way():
        return 1
    try:
        mine = DBOS.list_workflows(
            status="PENDING",
            executor_id=DBOS.executor_id,
            load_input=False,
            load_output=False,
        )
    except Exception:  # DBOS not launched, or its database is gone: nothing to drain
        return 0
    return len([w for w in mine if w.name != MONITOR_WORKFLOW])


@dataclass(frozen=True)
class Idleness:
    """What is left for the worker in its domains, and what it waits on."""

    busy: int
    """Tasks a worker still has to move on (releasing ones included)."""
    total: int
    """Tasks in these domains, in any state."""
    gateway_wanted: dict[str, list[str]] = field(default_factory=dict)
    """Target → the releasing tasks whose canary waits for a gateway serving it."""
    paused: int = 0
    """Releasing tasks whose rollout a person paused (they wait for a person)."""

    @property
    def waiting_for_gateway(self) -> int:
        return sum(len(tasks) for tasks in self.gateway_wanted.values())

    @property
    def idle(self) -> bool:
        """Nothing can move without a person or a gateway."""
        return self.busy <= self.waiting_for_gateway + self.paused


def idleness(rt: Runtime, domains: Sequence[str]) -> Idleness:
    """How busy these domains are; what, if anything, waits for a gateway or a person."""
    with rt.sessions() as session:
        by_state = dict(
            session.execute(
                select(TaskRow.state, func.count())
                .where(TaskRow.domain.in_(domains))
                .group_by(TaskRow.state)
            ).all()
        )
        releasing = session.execute(
            select(ReleaseRow.task_id, ReleaseRow.target, ReleaseRow.state, ReleaseRow.reason)
            .join(TaskRow, TaskRow.id == ReleaseRow.task_id)
            .where(TaskRow.state == TaskState.RELEASING.value, TaskRow.domain.in_(domains))
        ).all()
    wanted: dict[str, list[str]] = {}
    paused = 0
    for task_id, target, state, reason in releasing:
        if state == ReleaseState.PAUSED.value:
            paused += 1
        elif state == ReleaseState.CANARY.value and reason.startswith(WAITING_FOR_GATEWAY):
            wanted.setdefault(target, []).append(task_id)
    # A reason is as old as the release's last look: a gateway started since serves them now.
    wanted = {target: ids for target, ids in wanted.items() if gateway_info(rt, target) is None}
    return Idleness(
        busy=sum(int(by_state.get(state, 0)) for state in _BUSY),
        total=sum(int(n) for n in by_state.values()),
        gateway_wanted=wanted,
        paused=paused,
    )
