"""The sender: POSTs due deliveries from the outbox to their endpoints, inside a worker.

One thread per ``[notify.NAME]`` endpoint, apart from the threads that run tasks, so a slow
or dead endpoint delays neither tasks nor the other endpoints. Each thread routes new events
(any thread may), then takes its endpoint's due deliveries one at a time (see
``_outbox.claim_next``), POSTs each, and records the answer. After a failed attempt it
leaves the endpoint alone for ``backoff_seconds`` before looking again.

Delivery is at least once, with a stable id: a worker killed between a POST and recording
its answer leaves the delivery to be sent again, with the same CloudEvent ``id`` and
``webhook-id``, once its lease ends (at once when a live worker takes the dead one over).
"""

from __future__ import annotations

import contextlib
import email.utils
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker

from shipyard import __version__
from shipyard._crash import crashpoint
from shipyard.config import NotifySettings
from shipyard.observe._outbox import (
    Answer,
    Backoff,
    Claim,
    claim_next,
    record_outcome,
    route_events,
)
from shipyard.observe._webhooks import CONTENT_TYPE, encode, webhook_headers
from shipyard.store import transaction

__all__ = ["Endpoint", "Sender", "lease_seconds", "post", "send", "send_now"]

POLL_SECONDS = 1.0
"""How often an idle sender looks for due deliveries (events other processes recorded)."""
_ANSWER_BYTES = 512
"""How much of a failed answer's body is kept as its error."""


def lease_seconds(settings: NotifySettings) -> float:
    """How long a claim holds a delivery: the whole POST's time and a margin."""
    return 3 * settings.timeout_seconds + 30.0


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """An endpoint ready to send to: its settings and the key its deliveries are signed with."""

    name: str
    settings: NotifySettings
    key: bytes


def post(client: httpx.Client, endpoint: Endpoint, claim: Claim) -> Answer:
    """One attempt: the CloudEvent, signed, POSTed to the endpoint; what came of it."""
    body = encode(claim.event)
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": f"Shipyard/{__version__}",
        **webhook_headers(endpoint.key, claim.event_id, body),
    }
    timeout = endpoint.settings.timeout_seconds
    try:
        with client.stream(
            "POST", endpoint.settings.url, content=body, headers=headers, timeout=timeout
        ) as reply:
            status = reply.status_code
            if 200 <= status < 300:
                return Answer(status=status)
            told = b""
            for chunk in reply.iter_bytes():
                told += chunk
                if len(told) >= _ANSWER_BYTES:
                    break
    except httpx.TimeoutException:
        return Answer(status=None, error=f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Answer(status=None, error=f"{type(exc).__name__}: {exc}"[:500])
    text = told[:_ANSWER_BYTES].decode("utf-8", "replace").strip()
    return Answer(
        status=status,
        error=f"HTTP {status}" + (f": {text}" if text else ""),
        retry_after=_retry_after(reply.headers.get("retry-after")),
    )


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (it may be seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


class Sender:
    """Sends the outbox's deliveries while a worker runs: :meth:`start`, then :meth:`stop`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        endpoints: Mapping[str, Endpoint],
        *,
        source: str,
        owner: str,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.sessions = sessions
        self.endpoints = dict(endpoints)
        self.source = source
        self.owner = owner
        """The worker's id: its leases die with it (a live worker that takes it over)."""
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._routing = threading.Lock()

    def start(self) -> None:
        for endpoint in self.endpoints.values():
            thread = threading.Thread(
                target=self._run, args=(endpoint,), name=f"shipyard-notify-{endpoint.name}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self, *, final_pass: bool = False) -> None:
        """Stop the threads (a POST under way finishes first); with ``final_pass``, then send
        once what is due now: each endpoint's due deliveries until one fails or none is left.

        A worker that runs until idle ends with the final pass, so what its last tasks
        announced goes out before it exits; what fails stays in the outbox for the next
        worker, and no dead endpoint holds the exit up by more than one timeout.
        """
        self._stop.set()
        for thread in self._threads:  # a POST under way ends within its timeout
            thread.join(timeout=self._longest_post())
        self._threads.clear()
        if final_pass:
            self.route()
            with httpx.Client(follow_redirects=False) as client:
                for endpoint in self.endpoints.values():
                    self.send_due(client, endpoint, final=True)

    def _longest_post(self) -> float:
        return max((2 * e.settings.timeout_seconds + 5 for e in self.endpoints.values()), default=0)

    def route(self) -> int:
        """Route events not routed yet (one thread of this worker at a time)."""
        if not self._routing.acquire(blocking=False):
            return 0
        try:
            endpoints = {name: e.settings for name, e in self.endpoints.items()}
            with transaction(self.sessions) as session:
                return route_events(session, endpoints, source=self.source)
        finally:
            self._routing.release()

    def send_due(self, client: httpx.Client, endpoint: Endpoint, *, final: bool = False) -> bool:
        """Send the endpoint's due deliveries one by one; False when one failed (the rest wait
        for the next pass)."""
        while final or not self._stop.is_set():
            claim = claim_next(
                self.sessions,
                endpoint.name,
                owner=self.owner,
                lease_seconds=lease_seconds(endpoint.settings),
            )
            if claim is None:
                return True
            if send(self.sessions, client, endpoint, claim) != "delivered":
                return False
        return True

    def _run(self, endpoint: Endpoint) -> None:
        with httpx.Client(follow_redirects=False) as client:
            wait = 0.0
            while not self._stop.wait(wait):
                try:
                    self.route()
                    healthy = self.send_due(client, endpoint)
                    wait = self.poll_seconds if healthy else endpoint.settings.backoff_seconds
                except Exception as exc:  # the database away for a moment: look again soon
                    print(
                        f"notifications: sending to {endpoint.name} failed: {exc}",
                        file=sys.stderr,
                        flush=True,
                    )
                    wait = max(self.poll_seconds, 5.0)


def send(
    sessions: sessionmaker[Session],
    client: httpx.Client,
    endpoint: Endpoint,
    claim: Claim,
    *,
    max_attempts: int | None = None,
) -> str:
    """POST one claimed delivery and record what came of it; its state after."""
    answer = post(client, endpoint, claim)
    crashpoint("notify.after_post")
    return record_outcome(
        sessions,
        claim,
        answer,
        max_attempts=endpoint.settings.max_attempts if max_attempts is None else max_attempts,
        backoff=Backoff.of(endpoint.settings),
    )


def send_now(
    sessions: sessionmaker[Session],
    endpoint: Endpoint,
    delivery_id: int,
    *,
    owner: str,
    max_attempts: int | None = None,
) -> str | None:
    """Send one delivery now, due or not; its state after (None: another holds it)."""
    claim = claim_next(
        sessions,
        endpoint.name,
        owner=owner,
        lease_seconds=lease_seconds(endpoint.settings),
        delivery_id=delivery_id,
    )
    if claim is None:
        return None
    with httpx.Client(follow_redirects=False) as client:
        return send(sessions, client, endpoint, claim, max_attempts=max_attempts)
