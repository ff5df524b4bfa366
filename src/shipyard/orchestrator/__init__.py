"""The orchestrator: the durable task workflow, the workers, and the service functions.

It composes every stage (jobs, memory, generate, checks on a sandbox, artifacts, policy,
release); the stages never import it.
"""

from __future__ import annotations

from shipyard.orchestrator._fleet import WorkerInfo, list_workers
from shipyard.orchestrator._rollout import gateway_info, releases, steer
from shipyard.orchestrator._runtime import Runtime, current_runtime, install_runtime
from shipyard.orchestrator._service import (
    Rejected,
    SubmitResult,
    TaskStory,
    approval_queue,
    approve,
    budget_report,
    count_by_state,
    dbos_config,
    enqueue_pending,
    escalate_overdue,
    find_task,
    list_artifacts,
    list_tasks,
    provide,
    queue_name,
    reject,
    resume,
    rollback,
    submit,
    task_story,
)
from shipyard.orchestrator._tokens import (
    ROLES,
    Caller,
    authenticate,
    create_token,
    list_tokens,
    revoke_token,
)
from shipyard.orchestrator._views import story_dict, task_dict
from shipyard.orchestrator._worker import (
    busy_tasks,
    current_fleet,
    launch,
    shutdown,
    stop_gracefully,
)
from shipyard.orchestrator._workflow import (
    DECISION_WORKFLOW,
    RESUME_WORKFLOW,
    WORKFLOW_NAME,
    decision_workflow,
    resume_workflow,
    task_workflow,
)

__all__ = [
    "DECISION_WORKFLOW",
    "RESUME_WORKFLOW",
    "ROLES",
    "WORKFLOW_NAME",
    "Caller",
    "Rejected",
    "Runtime",
    "SubmitResult",
    "TaskStory",
    "WorkerInfo",
    "approval_queue",
    "approve",
    "authenticate",
    "budget_report",
    "busy_tasks",
    "count_by_state",
    "create_token",
    "current_fleet",
    "current_runtime",
    "dbos_config",
    "decision_workflow",
    "enqueue_pending",
    "escalate_overdue",
    "find_task",
    "gateway_info",
    "install_runtime",
    "launch",
    "list_artifacts",
    "list_tasks",
    "list_tokens",
    "list_workers",
    "provide",
    "queue_name",
    "reject",
    "releases",
    "resume",
    "resume_workflow",
    "revoke_token",
    "rollback",
    "shutdown",
    "steer",
    "stop_gracefully",
    "story_dict",
    "submit",
    "task_dict",
    "task_story",
    "task_workflow",
]
