"""Model-call rate limits shared by every worker: a sliding one-minute window per key.

Each call started is a row in ``model_calls``; a worker about to call locks the key's row,
counts the calls of the last minute and either records its own or waits until the oldest
leaves the window. The lock makes the count and the insert one step for all workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.store import ModelCallRow, database_now, lock_rows, transaction

__all__ = ["WINDOW", "take_slot"]

WINDOW = timedelta(minutes=1)


def take_slot(
    sessions: sessionmaker[Session],
    key: str,
    per_minute: int,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until a call under ``key`` fits ``per_minute``, record it; seconds waited."""
    waited = 0.0
    while True:
        with transaction(sessions) as session:
            lock_rows(session, f"calls {key}")
            now = database_now(session)
            session.execute(
                delete(ModelCallRow).where(ModelCallRow.key == key, ModelCallRow.at < now - WINDOW)
            )
            recent = session.scalars(
                select(ModelCallRow.at)
                .where(ModelCallRow.key == key, ModelCallRow.at >= now - WINDOW)
                .order_by(ModelCallRow.at)
                .limit(per_minute)
            ).all()
            if len(recent) < per_minute:
                session.add(ModelCallRow(key=key, at=now))
                return waited
            wait = (recent[0] + WINDOW - now).total_seconds()
        pause = min(max(wait, 0.05), 5.0)  # look again at least every 5 s
        sleep(pause)
        waited += pause
