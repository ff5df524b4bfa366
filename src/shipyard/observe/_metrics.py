"""Prometheus metrics, computed from Shipyard's records when scraped.

Every worker and ``shipyard serve`` expose the same series on ``/metrics``; since they are
read from the database, any one of them reports the whole project (scrape one).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.model import ReleaseState
from shipyard.store import (
    AttemptRow,
    NotifyCountRow,
    NotifyDeliveryRow,
    ReleaseRow,
    StepRow,
    TaskRow,
)

__all__ = ["ShipyardCollector", "metrics_text", "registry_for"]

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 10)
_BUSY = ("queued", "running", "resuming", "approved")


def _histogram(
    name: str, doc: str, label: str, values: dict[str, list[float]], buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    for key, observed in sorted(values.items()):
        cumulative = [
            (str(bound), float(sum(1 for v in observed if v <= bound))) for bound in buckets
        ]
        cumulative.append(("+Inf", float(len(observed))))
        family.add_metric([key] if label else [], cumulative, sum_value=float(sum(observed)))
    return family


class ShipyardCollector(Collector):
    """Tasks, stages, attempts, checks, tokens, cost, queues, approvals, releases and
    notifications."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            yield from self._tasks(session)
            yield from self._stages(session)
            yield from self._attempts(session)
            yield from self._releases(session)
            yield from self._notifications(session)

    def _tasks(self, session: Session) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "shipyard_tasks", "Tasks by state and job kind", labels=["state", "job_kind"]
        )
        queue = GaugeMetricFamily(
            "shipyard_queue_depth", "Tasks a worker still has to move on", labels=["domain"]
        )
        waiting = GaugeMetricFamily("shipyard_approvals_waiting", "Tasks waiting for approval")
        depth: dict[str, int] = {}
        waiting_count = 0
        for state, kind, domain, count in session.execute(
            select(TaskRow.state, TaskRow.job_kind, TaskRow.domain, func.count()).group_by(
                TaskRow.state, TaskRow.job_kind, TaskRow.domain
            )
        ):
            tasks.add_metric([state, kind], count)
            if state in _BUSY:
                depth[domain] = depth.get(domain, 0) + count
            if state == "waiting_approval":
                waiting_count += count
        for domain, count in sorted(depth.items()):
            queue.add_metric([domain], count)
        waiting.add_metric([], waiting_count)
        yield from (tasks, queue, waiting)

    def _stages(self, session: Session) -> Iterator[Metric]:
        durations: dict[str, list[float]] = {}
        for stage, started, finished in session.execute(
            select(StepRow.stage, StepRow.started_at, StepRow.finished_at).where(
                StepRow.finished_at.is_not(None)
            )
        ):
            if finished is not None:
                durations.setdefault(stage, []).append((finished - started).total_seconds())
        yield _histogram(
            "shipyard_stage_duration_seconds",
            "Time each pipeline stage took",
            "stage",
            durations,
            STAGE_BUCKETS,
        )

    def _attempts(self, session: Session) -> Iterator[Metric]:
        per_task: dict[str, int] = {}
        tokens = CounterMetricFamily(
            "shipyard_tokens", "Model tokens spent", labels=["direction", "job_kind"]
        )
        cost = CounterMetricFamily(
            "shipyard_cost_usd", "Model spend in US dollars", labels=["job_kind"]
        )
        checks = CounterMetricFamily(
            "shipyard_check_results", "Check outcomes", labels=["check", "outcome"]
        )
        spent: dict[str, list[Any]] = {}
        outcomes: dict[tuple[str, str], int] = {}
        for task_id, kind, tokens_in, tokens_out, usd, report in session.execute(
            select(
                AttemptRow.task_id,
                TaskRow.job_kind,
                AttemptRow.input_tokens,
                AttemptRow.output_tokens,
                AttemptRow.cost_usd,
                AttemptRow.report,
            ).join(TaskRow, TaskRow.id == AttemptRow.task_id)
        ):
            per_task[task_id] = per_task.get(task_id, 0) + 1
            bucket = spent.setdefault(kind, [0, 0, Decimal(0)])
            bucket[0] += tokens_in
            bucket[1] += tokens_out
            bucket[2] += Decimal(usd)
            for result in (report or {}).get("results", []):
                key = (str(result["check"]), "passed" if result["passed"] else "failed")
                outcomes[key] = outcomes.get(key, 0) + 1
        for kind, (tokens_in, tokens_out, usd) in sorted(spent.items()):
            tokens.add_metric(["input", kind], tokens_in)
            tokens.add_metric(["output", kind], tokens_out)
            cost.add_metric([kind], float(usd))
        for (check, outcome), count in sorted(outcomes.items()):
            checks.add_metric([check, outcome], count)
        yield _histogram(
            "shipyard_attempts_per_task",
            "Generations a task took",
            "",
            {"": [float(n) for n in per_task.values()]},
            ATTEMPT_BUCKETS,
        )
        yield from (tokens, cost, checks)

    def _releases(self, session: Session) -> Iterator[Metric]:
        # A gauge: releases move between states (a canary goes live, a live one is replaced),
        # so the count in a state falls as well as rises.
        releases = GaugeMetricFamily(
            "shipyard_releases",
            "Releases by target and their state now",
            labels=["target", "state"],
        )
        rollbacks = CounterMetricFamily(
            "shipyard_rollbacks", "Releases rolled back", labels=["target"]
        )
        for target, state, count in session.execute(
            select(ReleaseRow.target, ReleaseRow.state, func.count()).group_by(
                ReleaseRow.target, ReleaseRow.state
            )
        ):
            releases.add_metric([target, state], count)
            if state == ReleaseState.ROLLED_BACK:
                rollbacks.add_metric([target], count)
        yield from (releases, rollbacks)

    def _notifications(self, session: Session) -> Iterator[Metric]:
        # Counted as outcomes happen (never swept), so the counter only rises.
        outcomes = CounterMetricFamily(
            "shipyard_notification_deliveries",
            "Notification delivery outcomes: delivered, failed (an attempt that will be "
            "retried or ended dead) and dead",
            labels=["endpoint", "outcome"],
        )
        for endpoint, outcome, count in session.execute(
            select(NotifyCountRow.endpoint, NotifyCountRow.outcome, NotifyCountRow.count).order_by(
                NotifyCountRow.endpoint, NotifyCountRow.outcome
            )
        ):
            outcomes.add_metric([endpoint, outcome], count)
        waiting = GaugeMetricFamily(
            "shipyard_notifications_undelivered",
            "Notification deliveries not delivered yet, by endpoint and state (pending, dead)",
            labels=["endpoint", "state"],
        )
        for endpoint, state, count in session.execute(
            select(NotifyDeliveryRow.endpoint, NotifyDeliveryRow.state, func.count())
            .where(NotifyDeliveryRow.state != "delivered")
            .group_by(NotifyDeliveryRow.endpoint, NotifyDeliveryRow.state)
        ):
            waiting.add_metric([endpoint, state], count)
        yield from (outcomes, waiting)


def registry_for(sessions: sessionmaker[Session]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShipyardCollector(sessions))
    return registry


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
