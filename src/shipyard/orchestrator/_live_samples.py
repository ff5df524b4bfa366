"""The live version's traffic a monitor reads: a path's samples by the gateway's time
buckets, spread over a bounded number of stretches, and the pruning of samples no baseline
needs any more."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from shipyard.config import MonitorSettings
from shipyard.model import ReleaseState
from shipyard.release import LIVE_ARM, Bucket
from shipyard.store import IncidentRow, ReleaseRow, ReleaseSampleRow

__all__ = ["counts", "keep_after", "prune", "samples", "served_live_keys", "slots", "split"]

_SLOTS = 30
_SLOT_SECONDS = 5.0
"""The baseline's latencies are read from ``_SLOTS`` stretches of this many seconds spread
evenly over it (its counts from all of it): a round reads a bounded amount whatever the
traffic."""
_KEEP_MARGIN = timedelta(minutes=10)
"""Live samples older than every baseline by this much are removed by the round."""


def served_live_keys(session: Session, gateway: dict[str, Any]) -> list[str]:
    """Every live release on the targets this gateway serves (the path's peers at the same
    moments: the same process, the same machine)."""
    served = list(gateway.get("targets", []))
    return list(
        session.scalars(
            select(ReleaseRow.task_id).where(
                ReleaseRow.state == ReleaseState.LIVE, ReleaseRow.target.in_(served)
            )
        ).all()
    )


def slots(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Stretches of the baseline its latencies are read from."""
    span = (end - start).total_seconds()
    if span <= 0:
        return []
    if span <= _SLOTS * _SLOT_SECONDS:
        return [(start, end)]
    step_s = span / _SLOTS
    return [
        (
            start + timedelta(seconds=i * step_s),
            start + timedelta(seconds=i * step_s + _SLOT_SECONDS),
        )
        for i in range(_SLOTS)
    ]


def samples(
    session: Session, keys: Sequence[str], ranges: Sequence[tuple[datetime, datetime]]
) -> list[tuple[str, Bucket]]:
    """(release, bucket) of the live samples of ``keys`` within ``ranges``."""
    if not keys or not ranges:
        return []
    found: list[tuple[str, Bucket]] = []
    for chunk in _chunks(keys, 500):
        rows = session.execute(
            select(
                ReleaseSampleRow.task_id,
                ReleaseSampleRow.at,
                ReleaseSampleRow.requests,
                ReleaseSampleRow.errors,
                ReleaseSampleRow.latencies,
            ).where(
                ReleaseSampleRow.task_id.in_(chunk),
                ReleaseSampleRow.arm == LIVE_ARM,
                or_(*(and_(ReleaseSampleRow.at >= a, ReleaseSampleRow.at < b) for a, b in ranges)),
            )
        ).all()
        for key, at, n, e, latencies in rows:
            bucket = Bucket(at=at.timestamp(), requests=n, errors=e, latencies=list(latencies))
            found.append((key, bucket))
    return found


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def split(samples: list[tuple[str, Bucket]], key: str) -> tuple[list[Bucket], list[Bucket]]:
    """(this release's buckets, every other release's), oldest first."""
    ours = sorted((b for k, b in samples if k == key), key=lambda b: b.at)
    theirs = sorted((b for k, b in samples if k != key), key=lambda b: b.at)
    return ours, theirs


def counts(session: Session, key: str, start: datetime, end: datetime) -> tuple[int, int]:
    if end <= start:
        return 0, 0
    requests, errors = session.execute(
        select(
            func.coalesce(func.sum(ReleaseSampleRow.requests), 0),
            func.coalesce(func.sum(ReleaseSampleRow.errors), 0),
        ).where(
            ReleaseSampleRow.task_id == key,
            ReleaseSampleRow.arm == LIVE_ARM,
            ReleaseSampleRow.at >= start,
            ReleaseSampleRow.at < end,
        )
    ).one()
    return int(requests), int(errors)


def keep_after(session: Session, target: str, settings: MonitorSettings) -> datetime:
    """Live samples before this are no baseline's any more."""
    horizon = timedelta(seconds=settings.window_seconds, minutes=settings.baseline_minutes)
    keep = datetime.now(UTC) - horizon
    oldest = session.scalar(
        select(func.min(IncidentRow.window_start)).where(
            IncidentRow.target == target, IncidentRow.state == "open"
        )
    )
    if isinstance(oldest, datetime):
        keep = min(keep, oldest.astimezone(UTC) - timedelta(minutes=settings.baseline_minutes))
    return keep - _KEEP_MARGIN


def prune(session: Session, keys: Sequence[str], before: datetime) -> None:
    for chunk in _chunks(keys, 500):
        session.execute(
            delete(ReleaseSampleRow).where(
                ReleaseSampleRow.task_id.in_(chunk),
                ReleaseSampleRow.arm == LIVE_ARM,
                ReleaseSampleRow.at < before,
            )
        )
