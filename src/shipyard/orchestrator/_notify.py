"""Notifications from the orchestrator's point of view: what a task's events carry, and the
worker's sender with its endpoints' signing keys.

The outbox itself lives in ``observe`` (with its rows); this module knows the runtime: the
project's ``[notify.NAME]`` endpoints, where their secrets are read, and what a receiver
needs to know about a task (its id, job kind, domain, target and a console link).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sqlalchemy.orm import Session

from shipyard.errors import ConfigError
from shipyard.observe import Endpoint, Sender, record_event, signing_key, source_for
from shipyard.orchestrator._runtime import Runtime
from shipyard.store import TaskRow

__all__ = [
    "APPROVAL_ESCALATED",
    "APPROVAL_NEEDED",
    "BUDGET_PAUSED",
    "INCIDENT_OPENED",
    "RELEASE_ROLLED_BACK",
    "console_link",
    "endpoints",
    "rolled_back",
    "source",
    "start_sender",
    "stop_sender",
    "task_event",
]

APPROVAL_NEEDED = "dev.shipyard.approval.needed"
APPROVAL_ESCALATED = "dev.shipyard.approval.escalated"
RELEASE_ROLLED_BACK = "dev.shipyard.release.rolled_back"
INCIDENT_OPENED = "dev.shipyard.incident.opened"
BUDGET_PAUSED = "dev.shipyard.budget.paused"


def console_link(task_id: str) -> str:
    """The task's page in the console, as a path on the console's address."""
    return f"/console/tasks/{task_id}"


def task_event(
    rt: Runtime, session: Session, task: TaskRow, *, type: str, key: str, **data: Any
) -> None:
    """Record a notification about ``task`` in ``session``'s transaction, once per ``key``.

    Its data carries the task's id, job kind, domain, input key, submitter, release target
    (when its job kind has one) and console link, then ``data``.
    """
    target = ""
    if task.job_kind in rt.jobs.names():  # a job kind since removed still has its events
        release = rt.jobs.get(task.job_kind).release
        target = release.target if release is not None else ""
    record_event(
        session,
        type=type,
        subject=f"tasks/{task.id}",
        key=key,
        data={
            "task_id": task.id,
            "job_kind": task.job_kind,
            "domain": task.domain,
            "input_key": task.input_key,
            "submitted_by": task.submitted_by,
            "target": target,
            "link": console_link(task.id),
            **data,
        },
    )


def rolled_back(
    rt: Runtime, session: Session, task: TaskRow, *, reason: str, by: str, **data: Any
) -> None:
    """The release.rolled_back notification of ``task`` (once per task, however many paths
    — canary, monitor, a person, a site's rollback — come to roll it back)."""
    task_event(
        rt,
        session,
        task,
        type=RELEASE_ROLLED_BACK,
        key=f"{task.id}:release.rolled_back",
        reason=reason,
        rolled_back_by=by,
        **data,
    )


def source(rt: Runtime) -> str:
    """The CloudEvents ``source`` of this project's events."""
    return source_for(rt.project.settings.project.name)


def endpoints(rt: Runtime) -> dict[str, Endpoint]:
    """The project's endpoints with their signing keys.

    A secret is read from the environment, else from ``generate.secrets_file``; an endpoint
    whose variable is unset (or holds no valid secret) is a ConfigError naming it, so a
    worker refuses to start rather than send what no receiver could verify.
    """
    found: dict[str, Endpoint] = {}
    for name, settings in rt.project.settings.notify.items():
        variable = settings.secret_env
        secret = os.environ.get(variable) or rt.secrets.get(variable)
        if not secret:
            raise ConfigError(
                f"{rt.project.config_path}: [notify.{name}] signs with the secret in "
                f"${variable}, which is not set",
                hint=f"set {variable} in the worker's environment (or in generate.secrets_file) "
                "to the endpoint's whsec_... secret",
            )
        key = signing_key(secret, name=f"${variable} ([notify.{name}] secret_env)")
        found[name] = Endpoint(name=name, settings=settings, key=key)
    return found


def start_sender(rt: Runtime, owner: str, found: dict[str, Endpoint]) -> Sender | None:
    """Start sending to ``found`` endpoints in threads of this worker (None without any)."""
    if not found:
        return None
    sender = Sender(rt.sessions, found, source=source(rt), owner=owner)
    sender.start()
    return sender


def stop_sender(sender: Sender | None, *, final_pass: bool) -> None:
    """Stop sending; with ``final_pass``, first send once what is due (until-idle's exit)."""
    if sender is None:
        return
    try:
        sender.stop(final_pass=final_pass)
    except Exception as exc:  # the database gone: what is due stays for the next worker
        print(f"notifications: the last pass failed: {exc}", file=sys.stderr, flush=True)
