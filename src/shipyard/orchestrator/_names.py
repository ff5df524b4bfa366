"""The durable workflows' names, version and ids: what a recorded workflow is known by.

Kept apart from the workflows themselves so that enqueueing (``_queues``) and the service
layer can name a workflow without importing its steps.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "DECISION_WORKFLOW",
    "MONITOR_WORKFLOW",
    "RESUME_WORKFLOW",
    "ROLLOUT_WORKFLOW",
    "WAITING_FOR_GATEWAY",
    "WORKFLOW_NAME",
    "WORKFLOW_VERSION",
    "Decided",
    "Decision",
    "EffectDone",
    "Published",
    "RunPlan",
    "decision_workflow_id",
    "monitor_workflow_id",
    "resume_workflow_id",
    "rollout_workflow_id",
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
MONITOR_WORKFLOW = "shipyard.monitor"

WAITING_FOR_GATEWAY = "waiting for a gateway serving "
"""How a canary release's reason begins while no gateway serves its target (the target's
name follows): the worker's ``--until-idle`` tells these apart from work under way."""


def decision_workflow_id(task_id: str) -> str:
    return f"{task_id}.decision"


def rollout_workflow_id(task_id: str) -> str:
    return f"{task_id}.rollout"


def monitor_workflow_id(target: str, generation: int) -> str:
    """The id of a target's monitor; a monitor that stopped starts again as the next
    generation (an ended workflow's id cannot run again)."""
    return f"monitor.{target}.{generation}"


def resume_workflow_id(task_id: str, resumption: int) -> str:
    """The id of the ``resumption``-th resume of a task (each provide or resume is one)."""
    return f"{task_id}.resume{resumption}"


# -- what steps hand each other -----------------------------------------------------------
# Step results are checkpointed by DBOS and read back by a resumed workflow, so they are
# plain dicts at run time: TypedDicts give them names and types without changing that.


class RunPlan(TypedDict):
    """Where a task's pipeline starts (``shipyard.start``) or goes on (``shipyard.resume``)."""

    job_kind: str
    max_attempts: int
    on_exhausted: str
    attempt: int
    """The attempt to generate (or, with ``verify_first``, to check) next."""
    verify_first: bool
    """A person supplied this attempt's code: check it before generating anything."""


class Decided(TypedDict):
    """One person's recorded decision."""

    decision: str
    actor: str
    reason: str
    at: str


class Decision(TypedDict):
    """The people's decision on a task (``shipyard.read_decision``)."""

    job_kind: str
    decision: str
    """``approved`` or ``rejected``."""
    reason: str
    decisions: list[Decided]
    """The rejection, or every approval in order."""


class EffectDone(TypedDict):
    """How one of the job kind's effects ended (``shipyard.effect``)."""

    ok: bool
    error: str


Published = dict[str, Any]
"""What the ``publish`` tool returned (target, url_path, version, already_live): the tool's
own result, journalled and replayed as it is."""
