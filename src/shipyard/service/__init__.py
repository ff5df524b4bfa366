"""The service layer: the one set of commands and queries every face calls.

The CLI, the REST API, the console, replay and MCP render what these return; none of them
builds a query or writes a row. Commands record what a person or a program asked for and
enqueue the durable work (submit, decide, provide, resume, rollback, steer, retention);
queries answer questions about the records (find, list, story, trace, approvals,
artifacts, lineage, figures) and return the read models the faces share. The queries read
from a :class:`Runtime` or, for a face that only reads, from :class:`Records`.

Each name is imported from its module on first use (PEP 562), so a face pays only for what
it calls: ``shipyard status`` loads the queries, not the workflows, DBOS or the stages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from shipyard.service._records import Records
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
    "Records",
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

_FROM: dict[str, tuple[str, ...]] = {
    "shipyard.orchestrator": (
        "Idleness",
        "Runtime",
        "WorkerInfo",
        "current_fleet",
        "current_runtime",
        "evaluate_case",
        "gateway_info",
        "idleness",
        "install_runtime",
        "launch",
        "list_workers",
        "shutdown",
        "stop_gracefully",
    ),
    "shipyard.service._artifacts": (
        "collect_garbage",
        "diff_against_previous",
        "diff_artifacts",
        "find_artifact",
        "lineage",
        "openlineage_events",
        "produced_with",
        "verify_artifact",
    ),
    "shipyard.service._audit": ("AuditVerdict", "audit_entries", "export_audit", "verify_audit"),
    "shipyard.service._change": ("submit_change",),
    "shipyard.service._decide": (
        "Waiting",
        "approval_queue",
        "approve",
        "decide_task",
        "escalate_overdue",
        "provide",
        "reject",
        "resume",
    ),
    "shipyard.service._housekeeping": ("Collected", "apply_retention"),
    "shipyard.service._idempotency": ("business_key",),
    "shipyard.service._incidents": ("incidents", "monitors", "resolve_incident"),
    "shipyard.service._memory": (
        "add_memory",
        "export_memory",
        "import_memory",
        "purge_memory",
        "reindex_memory",
        "search_memory",
        "session_state",
    ),
    "shipyard.service._notifications": (
        "Outbox",
        "notifications",
        "retry_notifications",
        "send_test_notification",
    ),
    "shipyard.service._people": (
        "NO_TWO_PERSON_GUARANTEE",
        "TOKEN_VARIABLE",
        "Identity",
        "has_people",
        "identify",
    ),
    "shipyard.service._queries": (
        "TaskStory",
        "Trace",
        "budget_report",
        "count_by_state",
        "daily_figures",
        "figures",
        "find_task",
        "list_artifacts",
        "list_tasks",
        "task_story",
        "task_trace",
    ),
    "shipyard.service._records": ("Records",),
    "shipyard.service._releases": ("releases", "require_release_plans", "rollback", "steer"),
    "shipyard.service._submit": ("Existing", "Rejected", "SubmitResult", "submit"),
    "shipyard.service._tokens": (
        "ROLE_MAY",
        "ROLES",
        "Caller",
        "authenticate",
        "create_token",
        "list_tokens",
        "revoke_token",
        "role_may",
        "token_live",
    ),
    "shipyard.service._views": ("story_dict", "task_dict"),
}
"""Where each exported name lives (the imports above say the same to type checkers; a test
holds the two together)."""

_MODULE_OF = {name: module for module, names in _FROM.items() for name in names}


if not TYPE_CHECKING:  # type checkers read the imports above, and catch a misspelt name

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # found here from now on, without this call
        return value

    def __dir__() -> list[str]:
        return sorted([*globals(), *_MODULE_OF])
