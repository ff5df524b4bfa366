"""Retention across the project: ``shipyard gc``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shipyard.observe import sweep
from shipyard.orchestrator import Runtime
from shipyard.store import transaction

__all__ = ["Collected", "apply_retention"]


@dataclass(frozen=True, kw_only=True)
class Collected:
    days: int
    """``[observe] retention_days``: what is older goes."""
    spans: int
    samples: int
    memories: int
    """Expired memory items purged."""
    notifications: int = 0
    """Delivered notification events removed."""


def apply_retention(rt: Runtime) -> Collected:
    """Spans, traffic samples and delivered notifications past ``[observe] retention_days``,
    and expired memory."""
    days = rt.project.settings.observe.retention_days
    with transaction(rt.sessions) as session:
        swept = sweep(session, before=datetime.now(UTC) - timedelta(days=days))
        purged = rt.memory.purge(session)
    return Collected(
        days=days,
        spans=swept.spans,
        samples=swept.samples,
        memories=purged,
        notifications=swept.events,
    )
