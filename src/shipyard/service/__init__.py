"""The service layer: the one set of commands and queries every face calls.

The CLI, the REST API, the console, replay and MCP render what these return; none of them
builds a query or writes a row. Commands record what a person or a program asked for and
enqueue the durable work (submit, decide, provide, resume, rollback, steer, retention);
queries answer questions about the records (find, list, story, trace, approvals,
artifacts, lineage, figures) and return the read models the faces share.
"""

from __future__ import annotations

from shipyard.orchestrator import (
    Idleness,
    Runtime,
    WorkerInfo,
    current_fleet,
    current_runtime,
    evaluate_case,
    gateway_info,
    idleness,
    install_runtime,
    launch,
    list_workers,
    shutdown,
    stop_gracefully,
)
from shipyard.service._artifacts import (
    collect_garbage,
    diff_against_previous,
    diff_artifacts,
    find_artifact,
    lineage,
    openlineage_events,
    produced_with,
    verify_artifact,
)
from shipyard.service._audit import AuditVerdict, audit_entries, export_audit, verify_audit
from shipyard.service._change import submit_change
from shipyard.service._decide import (
    Waiting,
    approval_queue,
    approve,
    decide_task,
    escalate_overdue,
    provide,
    reject,
    resume,
)
from shipyard.service._housekeeping import Collected, apply_retention
from shipyard.service._idempotency import business_key
from shipyard.service._incidents import incidents, monitors, resolve_incident
from shipyard.service._memory import (
    add_memory,
    export_memory,
    import_memory,
    purge_memory,
    reindex_memory,
    search_memory,
    session_state,
)
from shipyard.service._notifications import (
    Outbox,
    notifications,
    retry_notifications,
    send_test_notification,
)
from shipyard.service._people import (
    NO_TWO_PERSON_GUARANTEE,
    TOKEN_VARIABLE,
    Identity,
    has_people,
    identify,
)
from shipyard.service._queries import (
    TaskStory,
    Trace,
    budget_report,
    count_by_state,
    daily_figures,
    figures,
    find_task,
    list_artifacts,
    list_tasks,
    task_story,
    task_trace,
)
from shipyard.service._releases import releases, require_release_plans, rollback, steer
from shipyard.service._submit import Existing, Rejected, SubmitResult, submit
from shipyard.service._tokens import (
    ROLE_MAY,
    ROLES,
    Caller,
    authenticate,
    create_token,
    list_tokens,
    revoke_token,
    role_may,
    token_live,
)
from shipyard.service._views import story_dict, task_dict

__all__ = [
    "NO_TWO_PERSON_GUARANTEE",
    "ROLES",
    "ROLE_MAY",
    "TOKEN_VARIABLE",
    "AuditVerdict",
    "Caller",
    "Collected",
    "Existing",
    "Identity",
    "Idleness",
    "Outbox",
    "Rejected",
    "Runtime",
    "SubmitResult",
    "TaskStory",
    "Trace",
    "Waiting",
    "WorkerInfo",
    "add_memory",
    "apply_retention",
    "approval_queue",
    "approve",
    "audit_entries",
    "authenticate",
    "budget_report",
    "business_key",
    "collect_garbage",
    "count_by_state",
    "create_token",
    "current_fleet",
    "current_runtime",
    "daily_figures",
    "decide_task",
    "diff_against_previous",
    "diff_artifacts",
    "escalate_overdue",
    "evaluate_case",
    "export_audit",
    "export_memory",
    "figures",
    "find_artifact",
    "find_task",
    "gateway_info",
    "has_people",
    "identify",
    "idleness",
    "import_memory",
    "incidents",
    "install_runtime",
    "launch",
    "lineage",
    "list_artifacts",
    "list_tasks",
    "list_tokens",
    "list_workers",
    "monitors",
    "notifications",
    "openlineage_events",
    "produced_with",
    "provide",
    "purge_memory",
    "reindex_memory",
    "reject",
    "releases",
    "require_release_plans",
    "resolve_incident",
    "resume",
    "retry_notifications",
    "revoke_token",
    "role_may",
    "rollback",
    "search_memory",
    "send_test_notification",
    "session_state",
    "shutdown",
    "steer",
    "stop_gracefully",
    "story_dict",
    "submit",
    "submit_change",
    "task_dict",
    "task_story",
    "task_trace",
    "token_live",
    "verify_artifact",
    "verify_audit",
]
