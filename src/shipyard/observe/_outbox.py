"""The notifications outbox: events recorded with the change they announce, and their
deliveries to the ``[notify.NAME]`` endpoints.

Recording is part of the caller's transaction (:func:`record_event`): an event exists if and
only if what it announces was committed, and its id derives from the caller's key, so a step
that runs again records nothing new. A sending worker routes each event once (one delivery
per endpoint that takes its type), then takes due deliveries one at a time under a lease:
on PostgreSQL the candidate row is locked ``FOR UPDATE SKIP LOCKED``, on SQLite the claim is
a conditional UPDATE; either way one worker holds a delivery while it sends. A lease ends
when its time is up, or when its worker has been taken over (it died). An answer in 2xx
delivers; anything else is tried again after a backoff until ``max_attempts``, and a 4xx
other than 408 and 429 (the receiver refuses this event) is dead at once.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.config import NOTIFY_EVENT_TYPES, NotifySettings
from shipyard.errors import InputError, NotFound, StateError
from shipyard.observe._webhooks import cloudevent
from shipyard.store import (
    NotifyCountRow,
    NotifyDeliveryRow,
    NotifyEventRow,
    WorkerRow,
    database_now,
    insert_ignore,
    transaction,
)

__all__ = [
    "DELIVERY_STATES",
    "TEST_EVENT_TYPE",
    "Answer",
    "Backoff",
    "Claim",
    "Delivery",
    "claim_next",
    "deliveries",
    "event_id",
    "record_event",
    "record_outcome",
    "record_test_event",
    "retry_deliveries",
    "route_events",
    "source_for",
    "sweep_events",
    "unrouted_events",
]

DELIVERY_STATES = ("pending", "delivered", "dead")
TEST_EVENT_TYPE = "dev.shipyard.test"
"""The type of ``shipyard notifications test``'s event (sent to one endpoint, never routed)."""
_NAMESPACE = uuid.UUID("6f1c2a52-8d0e-5b8e-9a43-7d2f3c1e5a90")
"""Event ids are UUID5s of their keys in this namespace."""
_RETRY_STATUSES = frozenset({408, 429})
"""4xx answers worth another attempt (the receiver was slow or busy, not refusing)."""
_ROUTE_BATCH = 500


def event_id(key: str) -> str:
    """The id of the event recorded under ``key``: the same key, the same id, everywhere."""
    return str(uuid.uuid5(_NAMESPACE, key))


def source_for(project: str) -> str:
    """The CloudEvents ``source`` of a project's events."""
    return f"urn:shipyard:project:{project}"


def record_event(
    session: Session, *, type: str, subject: str, data: Mapping[str, object], key: str
) -> None:
    """Record one CloudEvent in the outbox, in ``session``'s transaction, once per ``key``.

    ``type`` is one of ``config.NOTIFY_EVENT_TYPES``; ``subject`` what it is about
    (``tasks/ID``); ``data`` JSON-ready values; ``key`` names the occurrence (the event id
    derives from it): recording the same key again records nothing, so a step that runs twice
    makes one event. The deliveries are made by a sending worker, for the endpoints whose
    ``events`` list the type.
    """
    if type not in NOTIFY_EVENT_TYPES:
        raise InputError(
            f"unknown notification type {type!r}",
            hint=f"the types are: {', '.join(NOTIFY_EVENT_TYPES)}",
        )
    _insert(session, type=type, subject=subject, data=data, key=key, source="", routed=None)


def record_test_event(session: Session, *, endpoint: str, source: str, actor: str, key: str) -> int:
    """A ``dev.shipyard.test`` event with one delivery, to ``endpoint``; the delivery's id."""
    now = database_now(session)
    _insert(
        session,
        type=TEST_EVENT_TYPE,
        subject=f"notify/{endpoint}",
        data={
            "endpoint": endpoint,
            "sent_by": actor,
            "message": "a test event from `shipyard notifications test`",
        },
        key=key,
        source=source,
        routed=now,
    )
    insert_ignore(session, NotifyDeliveryRow, _new_delivery(event_id(key), endpoint, now))
    found = session.scalar(
        select(NotifyDeliveryRow.id).where(NotifyDeliveryRow.event_id == event_id(key))
    )
    if found is None:  # pragma: no cover - inserted just above, in this transaction
        raise StateError(f"the test event {key} has no delivery")
    return found


def _insert(
    session: Session,
    *,
    type: str,
    subject: str,
    data: Mapping[str, object],
    key: str,
    source: str,
    routed: datetime | None,
) -> None:
    if not key or len(key) > 300:
        raise InputError(f"an event key must be 1 to 300 characters (got {len(key)})")
    try:
        payload = json.loads(json.dumps(dict(data), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InputError(f"the data of a {type} event is not JSON: {exc}") from None
    insert_ignore(
        session,
        NotifyEventRow,
        {
            "id": event_id(key),
            "key": key,
            "type": type,
            "source": source,
            "subject": subject[:300],
            "time": database_now(session),
            "data": payload,
            "routed_at": routed,
        },
    )


def _new_delivery(event: str, endpoint: str, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event,
        "endpoint": endpoint,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "lease_owner": "",
        "last_error": "",
        "created_at": now,
    }


def route_events(session: Session, endpoints: Mapping[str, NotifySettings], *, source: str) -> int:
    """Make the deliveries of events no worker has routed yet: one per endpoint taking the
    event's type. Returns the events routed (in ``session``'s transaction).

    Two workers routing at once make each delivery once (the pair is unique).
    """
    query = (
        select(NotifyEventRow)
        .where(NotifyEventRow.routed_at.is_(None))
        .order_by(NotifyEventRow.time)
        .limit(_ROUTE_BATCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    events = session.scalars(query).all()
    if not events:
        return 0
    now = database_now(session)
    for event in events:
        for name, endpoint in endpoints.items():
            if event.type in endpoint.events:
                insert_ignore(session, NotifyDeliveryRow, _new_delivery(event.id, name, now))
        event.routed_at = now
        event.source = event.source or source
    return len(events)


def unrouted_events(session: Session) -> int:
    """Events no sending worker has routed yet."""
    found = session.scalar(
        select(func.count()).select_from(NotifyEventRow).where(NotifyEventRow.routed_at.is_(None))
    )
    return int(found or 0)


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One delivery taken for sending: what to POST, and whose lease it is."""

    delivery_id: int
    endpoint: str
    event_id: str
    attempt: int
    """This attempt's number (1 for the first)."""
    event: dict[str, Any]
    """The CloudEvent, as the JSON format has it."""
    owner: str


def _free(now: datetime) -> Any:
    """No lease holds the delivery: none, expired, or its worker was taken over."""
    gone = select(WorkerRow.id).where(WorkerRow.taken_over_at.is_not(None))
    return or_(
        NotifyDeliveryRow.leased_until.is_(None),
        NotifyDeliveryRow.leased_until < now,
        NotifyDeliveryRow.lease_owner.in_(gone),
    )


def claim_next(
    sessions: sessionmaker[Session],
    endpoint: str,
    *,
    owner: str,
    lease_seconds: float,
    delivery_id: int | None = None,
) -> Claim | None:
    """Take the endpoint's next due delivery (or ``delivery_id``, due or not) for sending.

    The attempt is counted now, so a worker killed in the middle of a POST leaves that
    attempt on the record. None when nothing is due, or another worker holds it.
    """
    with transaction(sessions) as session:
        now = database_now(session)
        query = select(NotifyDeliveryRow.id).where(
            NotifyDeliveryRow.endpoint == endpoint,
            NotifyDeliveryRow.state == "pending",
            _free(now),
        )
        if delivery_id is None:
            query = query.where(NotifyDeliveryRow.next_attempt_at <= now)
        else:
            query = query.where(NotifyDeliveryRow.id == delivery_id)
        query = query.order_by(NotifyDeliveryRow.next_attempt_at, NotifyDeliveryRow.id).limit(1)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        found = session.scalar(query)
        if found is None:
            return None
        # On SQLite the select above locks nothing: the conditional UPDATE is the claim.
        claimed = session.execute(
            update(NotifyDeliveryRow)
            .where(
                NotifyDeliveryRow.id == found,
                NotifyDeliveryRow.state == "pending",
                _free(now),
            )
            .values(
                lease_owner=owner,
                leased_until=now + timedelta(seconds=lease_seconds),
                attempts=NotifyDeliveryRow.attempts + 1,
                last_attempt_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row, event = session.execute(
            select(NotifyDeliveryRow, NotifyEventRow)
            .join(NotifyEventRow, NotifyEventRow.id == NotifyDeliveryRow.event_id)
            .where(NotifyDeliveryRow.id == found)
        ).one()
        return Claim(
            delivery_id=row.id,
            endpoint=row.endpoint,
            event_id=event.id,
            attempt=row.attempts,
            event=cloudevent(
                id=event.id,
                source=event.source,
                type=event.type,
                subject=event.subject,
                time=event.time,
                data=event.data,
            ),
            owner=owner,
        )


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What one POST came to."""

    status: int | None
    """The HTTP status; None when no answer came (refused, reset, timed out)."""
    error: str = ""
    """Why it failed, for people ('' when delivered)."""
    retry_after: float | None = None
    """Seconds the receiver asked to wait (``Retry-After``), if it did."""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """A 4xx other than 408 and 429: the receiver will not take this event, ever."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and (self.status not in _RETRY_STATUSES)
        )


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How long a failed delivery waits before its next attempt.

    The wait after attempt ``n`` is ``first_seconds × multiplier^(n-1)``, scaled by a random
    factor in ``[1 - jitter, 1 + jitter]`` (so deliveries that failed together do not return
    together), at most ``max_seconds``. A receiver's ``Retry-After`` replaces it (up to
    ``max_seconds`` too).
    """

    first_seconds: float = 5.0
    """The wait after the first failed attempt (``backoff_seconds``)."""
    multiplier: float = 4.0
    """Each wait is this many times the one before (``backoff_multiplier``)."""
    max_seconds: float = 21600.0
    """No wait is longer (``backoff_max_seconds``)."""
    jitter: float = 0.2

    @classmethod
    def of(cls, settings: NotifySettings) -> Backoff:
        return cls(
            first_seconds=settings.backoff_seconds,
            multiplier=settings.backoff_multiplier,
            max_seconds=settings.backoff_max_seconds,
        )

    def wait_after(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_seconds))
        spread = 1 - self.jitter + 2 * self.jitter * random.random()
        exponent = min(max(attempt - 1, 0), 60)  # past this the cap decides anyway
        return min(self.first_seconds * self.multiplier**exponent * spread, self.max_seconds)


def record_outcome(
    sessions: sessionmaker[Session],
    claim: Claim,
    answer: Answer,
    *,
    max_attempts: int,
    backoff: Backoff,
) -> str:
    """Record what the attempt came to; the delivery's state after it.

    Delivered is recorded whoever holds the lease now (the receiver has it); a failure only
    by the lease's holder (a worker that took the delivery over after this lease ran out is
    trying again already).
    """
    with transaction(sessions) as session:
        now = database_now(session)
        mine = (NotifyDeliveryRow.id == claim.delivery_id, NotifyDeliveryRow.state == "pending")
        if answer.delivered:
            done = session.execute(
                update(NotifyDeliveryRow)
                .where(*mine)
                .values(
                    state="delivered",
                    delivered_at=now,
                    last_status=answer.status,
                    last_error="",
                    leased_until=None,
                    lease_owner="",
                )
                .execution_options(synchronize_session=False)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                _count(session, claim.endpoint, "delivered")
            return "delivered"
        dead = answer.refused or claim.attempt >= max_attempts
        values: dict[str, Any] = {
            "state": "dead" if dead else "pending",
            "last_status": answer.status,
            "last_error": answer.error[:2000],
            "leased_until": None,
            "lease_owner": "",
        }
        if not dead:
            wait = backoff.wait_after(claim.attempt, answer.retry_after)
            values["next_attempt_at"] = now + timedelta(seconds=wait)
        done = session.execute(
            update(NotifyDeliveryRow)
            .where(*mine, NotifyDeliveryRow.lease_owner == claim.owner)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return "pending"
        _count(session, claim.endpoint, "failed")
        if dead:
            _count(session, claim.endpoint, "dead")
        return str(values["state"])


def _count(session: Session, endpoint: str, outcome: str) -> None:
    insert_ignore(session, NotifyCountRow, {"endpoint": endpoint, "outcome": outcome, "count": 0})
    session.execute(
        update(NotifyCountRow)
        .where(NotifyCountRow.endpoint == endpoint, NotifyCountRow.outcome == outcome)
        .values(count=NotifyCountRow.count + 1)
    )


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One event on its way to one endpoint, as ``shipyard notifications`` shows it."""

    id: int
    event_id: str
    type: str
    subject: str
    endpoint: str
    state: str
    """``pending``, ``delivered`` or ``dead``."""
    attempts: int
    sending: bool
    """A worker holds it now (a POST under way)."""
    next_attempt_at: datetime | None
    """When a pending delivery is tried next (None once delivered or dead)."""
    last_status: int | None
    last_error: str
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None


def deliveries(
    session: Session,
    *,
    state: str = "",
    endpoint: str = "",
    ids: Sequence[int] = (),
    limit: int = 100,
) -> list[Delivery]:
    """Deliveries, newest first (by state, endpoint or ids)."""
    if state and state not in DELIVERY_STATES:
        raise InputError(
            f"unknown delivery state {state!r}", hint=f"one of: {', '.join(DELIVERY_STATES)}"
        )
    now = database_now(session)
    query = select(NotifyDeliveryRow, NotifyEventRow.type, NotifyEventRow.subject).join(
        NotifyEventRow, NotifyEventRow.id == NotifyDeliveryRow.event_id
    )
    if state:
        query = query.where(NotifyDeliveryRow.state == state)
    if endpoint:
        query = query.where(NotifyDeliveryRow.endpoint == endpoint)
    if ids:
        query = query.where(NotifyDeliveryRow.id.in_(list(ids)))
    rows = session.execute(query.order_by(NotifyDeliveryRow.id.desc()).limit(limit)).all()
    return [
        Delivery(
            id=row.id,
            event_id=row.event_id,
            type=type_,
            subject=subject,
            endpoint=row.endpoint,
            state=row.state,
            attempts=row.attempts,
            sending=row.leased_until is not None and row.leased_until > now,
            next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
            last_status=row.last_status,
            last_error=row.last_error,
            created_at=row.created_at,
            last_attempt_at=row.last_attempt_at,
            delivered_at=row.delivered_at,
        )
        for row, type_, subject in rows
    ]


def retry_deliveries(session: Session, *, ids: Sequence[int] = (), dead: bool = False) -> list[int]:
    """Send these deliveries (or every dead one) again, now, with a fresh count of attempts.

    A delivered one is refused: it arrived (its receiver deduplicates on the event id; use
    ``shipyard notifications test`` to check an endpoint).
    """
    if not ids and not dead:
        raise InputError("name the deliveries to retry", hint="give their ids, or --dead")
    chosen: list[int] = []
    if ids:
        found = {
            row.id: row.state
            for row in session.scalars(
                select(NotifyDeliveryRow).where(NotifyDeliveryRow.id.in_(list(ids)))
            )
        }
        for wanted in ids:
            if wanted not in found:
                raise NotFound(f"no delivery {wanted}", hint="`shipyard notifications` lists them")
            if found[wanted] == "delivered":
                raise StateError(
                    f"delivery {wanted} was delivered: there is nothing to retry",
                    hint="retry applies to dead (or pending) deliveries",
                )
        chosen = list(dict.fromkeys(ids))
    if dead:
        chosen += [
            id_
            for id_ in session.scalars(
                select(NotifyDeliveryRow.id).where(NotifyDeliveryRow.state == "dead")
            )
            if id_ not in chosen
        ]
    if chosen:
        session.execute(
            update(NotifyDeliveryRow)
            .where(NotifyDeliveryRow.id.in_(chosen), NotifyDeliveryRow.state != "delivered")
            .values(state="pending", attempts=0, next_attempt_at=database_now(session))
            .execution_options(synchronize_session=False)
        )
    return sorted(chosen)


def sweep_events(session: Session, *, before: datetime) -> int:
    """Remove events older than ``before`` that no endpoint waits for: every delivery of them
    delivered (or none made). Pending and dead deliveries stay, with their events."""
    waiting = select(NotifyDeliveryRow.event_id).where(NotifyDeliveryRow.state != "delivered")
    gone = session.scalars(
        select(NotifyEventRow.id).where(
            NotifyEventRow.time < before, NotifyEventRow.id.not_in(waiting)
        )
    ).all()
    for start in range(0, len(gone), 500):
        chunk = list(gone[start : start + 500])
        # Deliveries first: the cascade is the database's, and SQLite's needs its pragma.
        session.execute(
            delete(NotifyDeliveryRow)
            .where(NotifyDeliveryRow.event_id.in_(chunk))
            .execution_options(synchronize_session=False)
        )
        session.execute(
            delete(NotifyEventRow)
            .where(NotifyEventRow.id.in_(chunk))
            .execution_options(synchronize_session=False)
        )
    return len(gone)
