"""Workers: processes that launch DBOS, listen to the domains' queues and run tasks.

A worker recovers the workflows a killed worker left in flight when it launches (DBOS does
this from its checkpoints), then runs queued tasks until it is stopped, or, with
``until_idle``, until every task is finished or waiting for a person.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from dbos import DBOS
from sqlalchemy import func, select

from shipyard.errors import ConfigError, StateError
from shipyard.model import TaskState
from shipyard.orchestrator._runtime import Runtime, current_runtime, install_runtime
from shipyard.orchestrator._service import dbos_config, enqueue_pending, queue_name
from shipyard.store import TaskRow

__all__ = ["busy_tasks", "launch", "shutdown"]

_BUSY = (
    TaskState.QUEUED.value,
    TaskState.RUNNING.value,
    TaskState.APPROVED.value,
    TaskState.RESUMING.value,
    TaskState.RELEASING.value,
)


def launch(
    rt: Runtime, *, domains: Sequence[str] = (), executor_id: str | None = None
) -> list[str]:
    """Install ``rt`` and launch DBOS on the domains' queues (all domains when empty)."""
    known = rt.project.settings.domains
    chosen = list(domains) or list(known)
    unknown = [d for d in chosen if d not in known]
    if unknown:
        raise ConfigError(
            f"unknown domain(s): {', '.join(unknown)}",
            hint=f"domains in {rt.project.config_path}: {', '.join(known) or '(none)'}",
        )
    rt.check_tiers()  # a tier it cannot call (no key, no such provider) stops it here
    install_runtime(rt)
    DBOS(config=dbos_config(rt.project, executor_id=executor_id))  # type: ignore[arg-type]
    DBOS.listen_queues([queue_name(d) for d in chosen])
    DBOS.launch()
    for domain in chosen:
        DBOS.register_queue(
            queue_name(domain),
            global_concurrency=known[domain].concurrency,
            worker_concurrency=known[domain].worker_concurrency,
            polling_interval_sec=0.2,
            on_conflict="always_update",
        )
    enqueue_pending(rt)  # work recorded by a process that died before enqueueing it
    rt.sandbox.warm()  # the zygotes import the check tooling while the first tasks generate
    return chosen


def shutdown(*, drain_seconds: float = 10.0) -> None:
    """Stop DBOS in this process.

    Workflows still running get up to ``drain_seconds`` to reach their end (a task whose
    state is final may still be recording its workflow's result); whatever is in flight
    after that resumes from its last finished step at the next launch.
    """
    deadline = time.monotonic() + drain_seconds
    while time.monotonic() < deadline and _running_workflows():
        time.sleep(0.05)
    DBOS.destroy(workflow_completion_timeout_sec=0)
    with contextlib.suppress(StateError):  # no runtime installed: nothing to flush
        current_runtime().tracing.flush()
    install_runtime(None)


def _running_workflows() -> int:
    try:
        return len(DBOS.list_workflows(status="PENDING", load_input=False, load_output=False))
    except Exception:  # DBOS not launched, or its database is gone: nothing to drain
        return 0


def busy_tasks(rt: Runtime, domains: Sequence[str]) -> int:
    """Tasks in these domains that a worker still has to move on."""
    with rt.sessions() as session:
        count = session.scalar(
            select(func.count())
            .select_from(TaskRow)
            .where(TaskRow.state.in_(_BUSY), TaskRow.domain.in_(domains))
        )
    return int(count or 0)
