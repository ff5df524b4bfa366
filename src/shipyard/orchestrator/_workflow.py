"""The task pipeline as durable DBOS workflows; each stage is a durable step.

    shipyard.task:      validate -> recall -> (generate -> verify)* -> register -> gate
                        -> [auto] release -> remember
    shipyard.decision:  (after a person approves or rejects) approval -> release -> remember
    shipyard.rollout:   (a release with a rollout plan) deploy -> stages -> promote or
                        roll back -> remember; started by either, outside the queue
    shipyard.monitor:   (one per watched target, started once something is live there)
                        rounds of probes and analysis of the live paths -> incidents,
                        rollback; outside the queue (see ``_monitor``)

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

from collections.abc import Callable

from dbos import DBOS, SetWorkflowID
from dbos import error as dbos_errors

from shipyard.errors import ShipyardError
from shipyard.jobs import JobKind
from shipyard.model import DecisionKind, GateOutcome, TaskState
from shipyard.orchestrator import _monitor as monitor
from shipyard.orchestrator import _rollout as rollout
from shipyard.orchestrator._generate import (
    escalate_step,
    generate_step,
    recall_step,
    resume_step,
    start_step,
)
from shipyard.orchestrator._names import (
    DECISION_WORKFLOW,
    RESUME_WORKFLOW,
    ROLLOUT_WORKFLOW,
    WORKFLOW_NAME,
    monitor_workflow_id,
    rollout_workflow_id,
)
from shipyard.orchestrator._runtime import Runtime, current_runtime
from shipyard.orchestrator._ship import (
    compensate_step,
    effect_step,
    finish_step,
    read_decision_step,
    record_decision_step,
    release_step,
)
from shipyard.orchestrator._verify import gate_step, register_step, verify_step

__all__ = ["decision_workflow", "resume_workflow", "rollout_workflow", "task_workflow"]


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
    if decision["decision"] == DecisionKind.REJECTED:
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
    if kind.release is not None:
        _watch(kind.release.target)
    return state.value


def _watch(target: str) -> None:
    """Something went live on ``target``: its monitor runs from now on (started, or the one
    already watching found). Started outside the queue, like a rollout."""
    generation = monitor.claim_step(target)
    if generation:
        with SetWorkflowID(monitor_workflow_id(target, generation)):
            DBOS.start_workflow(monitor.monitor_workflow, target, generation)
