"""The orchestrator: the durable workflows and their steps, the workers and the fleet, the
queues, rate windows and budget holds that workflows share.

It composes every stage (jobs, memory, generate, checks on a sandbox, artifacts, policy,
release); the stages never import it. The service layer (``shipyard.service``) is what the
faces call; it uses what this package exports.
"""

from __future__ import annotations

from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator import _ledger as ledger
from shipyard.orchestrator import _notify as notify
from shipyard.orchestrator._effects import restore_replaced
from shipyard.orchestrator._fleet import WorkerInfo, list_workers
from shipyard.orchestrator._govern import CaseResult, evaluate_case
from shipyard.orchestrator._incidents import close_incident
from shipyard.orchestrator._ledger import BudgetReport
from shipyard.orchestrator._monitor import monitor_workflow
from shipyard.orchestrator._names import (
    DECISION_WORKFLOW,
    MONITOR_WORKFLOW,
    RESUME_WORKFLOW,
    ROLLOUT_WORKFLOW,
    WORKFLOW_NAME,
    WORKFLOW_VERSION,
)
from shipyard.orchestrator._queues import dbos_config, enqueue_pending, queue_name
from shipyard.orchestrator._rollout import COMMANDS, gateway_info
from shipyard.orchestrator._runtime import Runtime, current_runtime, install_runtime
from shipyard.orchestrator._withdraw import Withdrawn, withdraw_live
from shipyard.orchestrator._worker import (
    Idleness,
    current_fleet,
    idleness,
    launch,
    shutdown,
    stop_gracefully,
)
from shipyard.orchestrator._workflow import (
    decision_workflow,
    resume_workflow,
    rollout_workflow,
    task_workflow,
)

__all__ = [
    "COMMANDS",
    "DECISION_WORKFLOW",
    "MONITOR_WORKFLOW",
    "RESUME_WORKFLOW",
    "ROLLOUT_WORKFLOW",
    "WORKFLOW_NAME",
    "WORKFLOW_VERSION",
    "BudgetReport",
    "CaseResult",
    "Idleness",
    "Runtime",
    "Withdrawn",
    "WorkerInfo",
    "close_incident",
    "current_fleet",
    "current_runtime",
    "dbos_config",
    "decision_workflow",
    "enqueue_pending",
    "evaluate_case",
    "gateway_info",
    "govern",
    "idleness",
    "install_runtime",
    "launch",
    "ledger",
    "list_workers",
    "monitor_workflow",
    "notify",
    "queue_name",
    "restore_replaced",
    "resume_workflow",
    "rollout_workflow",
    "shutdown",
    "stop_gracefully",
    "task_workflow",
    "withdraw_live",
]
