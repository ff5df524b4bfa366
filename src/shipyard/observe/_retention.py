"""Retention: what ``shipyard gc`` removes once it is older than ``[observe] retention_days``.

Spans (with the prompts and replies they carry), the gateway's traffic samples of releases
that are no longer baking, and notifications no endpoint waits for any more (every delivery
delivered) go; records, verdicts, aggregates, and dead or pending deliveries stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shipyard.model import ReleaseState
from shipyard.observe._outbox import sweep_events
from shipyard.store import ReleaseRow, ReleaseSampleRow, SpanRow

__all__ = ["Swept", "sweep"]


@dataclass(frozen=True, kw_only=True)
class Swept:
    spans: int
    """Spans removed."""
    samples: int
    """Traffic samples removed."""
    events: int = 0
    """Notification events removed (with their deliveries, all delivered)."""


def sweep(session: Session, *, before: datetime) -> Swept:
    """Remove spans that ended, samples taken and delivered notifications recorded before
    ``before``, in ``session``."""
    cutoff = int(before.timestamp() * 1e9)
    baking = select(ReleaseRow.task_id).where(
        ReleaseRow.state.in_((ReleaseState.CANARY, ReleaseState.PAUSED))
    )
    spans = session.execute(delete(SpanRow).where(SpanRow.end_ns < cutoff))
    samples = session.execute(
        delete(ReleaseSampleRow).where(
            ReleaseSampleRow.at < before, ReleaseSampleRow.task_id.not_in(baking)
        )
    )
    return Swept(
        spans=spans.rowcount,  # type: ignore[attr-defined]
        samples=samples.rowcount,  # type: ignore[attr-defined]
        events=sweep_events(session, before=before),
    )
