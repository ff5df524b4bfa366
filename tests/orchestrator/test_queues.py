"""The domains' queues as workers register them: capped per worker, and across all workers
only when the domain asks (a queue-wide cap makes every worker's dequeue a serializable claim
that fails its peers' claims and backs off, see ``_queues.queue_settings``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dbos import DBOS

from shipyard.config import load_project
from shipyard.orchestrator._queues import queue_name, queue_settings
from shipyard.service import Runtime
from shipyard.testing import scaffold_project


def test_a_domain_without_a_cap_gets_a_queue_capped_per_worker_only(
    tmp_path: Path, database: str, start_worker: Callable[..., Runtime]
) -> None:
    project = load_project(scaffold_project(tmp_path / "p", worker_concurrency=3))
    assert project.settings.domains["ops"].concurrency is None
    start_worker(project)
    queue = DBOS.retrieve_queue(queue_name("ops"))
    assert queue is not None
    assert (queue.worker_concurrency, queue.concurrency, queue.limiter) == (3, None, None)


def test_a_cap_across_workers_and_a_rate_are_registered_when_the_domain_sets_them(
    tmp_path: Path, database: str, start_worker: Callable[..., Runtime]
) -> None:
    root = scaffold_project(tmp_path / "p", concurrency=5, worker_concurrency=2)
    config = root / "shipyard.toml"
    config.write_text(
        config.read_text().replace("worker_concurrency = 2\n", "worker_concurrency = 2\n"
                                   "tasks_per_minute = 30\n")
    )  # fmt: skip
    project = load_project(root)
    assert queue_settings(project, "ops")["global_concurrency"] == 5
    start_worker(project)
    queue = DBOS.retrieve_queue(queue_name("ops"))
    assert queue is not None
    assert (queue.worker_concurrency, queue.concurrency) == (2, 5)
    assert queue.limiter == {"limit": 30, "period": 60.0}
