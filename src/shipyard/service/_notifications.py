"""Notifications as people see them: the outbox's deliveries, sending dead ones again, and a
test event to check an endpoint (``shipyard notifications``)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from shipyard.errors import NotFound, StateError
from shipyard.observe import (
    Delivery,
    deliveries,
    record_test_event,
    retry_deliveries,
    send_now,
    unrouted_events,
)
from shipyard.orchestrator import Runtime, govern, notify
from shipyard.store import transaction

__all__ = ["Outbox", "notifications", "retry_notifications", "send_test_notification"]


@dataclass(frozen=True, kw_only=True)
class Outbox:
    """The deliveries asked for, and how many events no sending worker has routed yet."""

    deliveries: list[Delivery]
    unrouted: int
    """Events recorded that no worker with ``[notify]`` endpoints has seen yet."""
    endpoints: list[str]
    """The ``[notify.NAME]`` endpoints this project's configuration declares."""


def notifications(rt: Runtime, *, state: str = "", endpoint: str = "", limit: int = 100) -> Outbox:
    """Deliveries, newest first, by state (``pending``, ``delivered``, ``dead``) and endpoint."""
    with rt.sessions() as session:
        return Outbox(
            deliveries=deliveries(session, state=state, endpoint=endpoint, limit=limit),
            unrouted=unrouted_events(session),
            endpoints=list(rt.project.settings.notify),
        )


def retry_notifications(
    rt: Runtime, ids: Sequence[int] = (), *, dead: bool = False, actor: str
) -> list[int]:
    """Send these deliveries (or every dead one) again: due now, with a fresh count of
    attempts; a running worker sends them. Audited. Returns the deliveries retried."""
    with transaction(rt.sessions) as session:
        retried = retry_deliveries(session, ids=ids, dead=dead)
        if retried:
            govern.record(
                session,
                actor=actor,
                action="notify",
                subject="notifications",
                decision="retry",
                reason=f"{len(retried)} deliver{'y' if len(retried) == 1 else 'ies'} sent again",
                detail={"deliveries": retried},
            )
    return retried


def send_test_notification(rt: Runtime, name: str, *, actor: str) -> Delivery:
    """Send a ``dev.shipyard.test`` event to endpoint ``name`` now, once, and say what came
    of it (delivered, or dead with the receiver's answer); the delivery stays on record.

    The endpoint's secret is read as a worker reads it, so a test that is delivered shows
    that a worker's deliveries will be too.
    """
    configured = rt.project.settings.notify
    if name not in configured:
        raise NotFound(
            f"no endpoint [notify.{name}] in {rt.project.config_path}",
            hint=f"declared endpoints: {', '.join(configured) or '(none)'}",
        )
    endpoint = notify.endpoints(rt)[name]
    key = f"test:{name}:{secrets.token_hex(8)}"
    with transaction(rt.sessions) as session:
        delivery_id = record_test_event(
            session, endpoint=name, source=notify.source(rt), actor=actor, key=key
        )
    owner = f"{socket.gethostname()[:48]}-{os.getpid()}-test"
    state = send_now(rt.sessions, endpoint, delivery_id, owner=owner, max_attempts=1)
    if state is None:  # pragma: no cover - a fresh delivery nobody else knows of
        raise StateError(f"the test delivery {delivery_id} was taken by another sender")
    with rt.sessions() as session:
        return deliveries(session, ids=[delivery_id], limit=1)[0]
