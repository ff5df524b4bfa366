"""The durable workflows' names, version and ids: what a recorded workflow is known by.

Kept apart from the workflows themselves so that enqueueing (``_queues``) and the service
layer can name a workflow without importing its steps.
"""

from __future__ import annotations

__all__ = [
    "DECISION_WORKFLOW",
    "RESUME_WORKFLOW",
    "ROLLOUT_WORKFLOW",
    "WORKFLOW_NAME",
    "WORKFLOW_VERSION",
    "decision_workflow_id",
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


def decision_workflow_id(task_id: str) -> str:
    return f"{task_id}.decision"


def rollout_workflow_id(task_id: str) -> str:
    return f"{task_id}.rollout"


def resume_workflow_id(task_id: str, resumption: int) -> str:
    """The id of the ``resumption``-th resume of a task (each provide or resume is one)."""
    return f"{task_id}.resume{resumption}"
