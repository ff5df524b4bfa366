"""Budget leases: each worker's share of the day budgets, so a model call is held against its
own worker's lease in memory instead of under a row every worker locks.

A day budget (a domain's, or all domains') binds every task, so holding each call against it
under its row's lock made every worker's every call wait for the one before it, and the lock
was held while the day's spend was summed. Instead a worker *leases* a share of the budget:
under the budget row's lock, once, it counts what the budget has committed (spent, held, and
what the other workers' leases still reserve) and takes room for ``calls`` more calls like
this one, at most a quarter of what is left (``SHARE``), into its row in ``budget_leases``.
Then each call is a check and a sum in this process. The lease is renewed (its room recounted,
the shared row locked again) when it cannot take a call, and at most ``RENEW_SECONDS`` after
it was last counted.

What a lease reserves, for everyone else, is its grant less what its owner's attempts spent
(``attempts.budget_lease`` names the owner), so the reconciliation is the records
themselves: a recorded call moves from the lease's reserve to the budget's spend in the
transaction that records it, and nothing is counted twice or missed. The owner counts the
same call as held until it settles, so it errs only toward caution. The caps hold exactly as
with per-call holds: everything granted fits the budget when granted, and a worker spends
only within its grant. A budget can now refuse a call while another worker's lease still has
room (the price of not asking everyone); a lease is at most a quarter of what was left, and
it lapses ``RENEW_SECONDS`` (plus the longest call's hold) after its owner last renewed it, so
a dead worker's lease frees itself. Leases are released when the runtime closes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.generate import Limit, Spend
from shipyard.orchestrator._ledger import Budget, committed, day_start
from shipyard.store import (
    BudgetLeaseRow,
    database_now,
    insert_ignore,
    lock_rows,
    transaction,
)

__all__ = ["RENEW_SECONDS", "SHARE", "BudgetLeases"]

SHARE = Decimal(1) / 4
"""The most of what a budget has left that one lease takes at once."""
RENEW_SECONDS = 60.0
"""How long a lease serves calls between renewals; it reserves until this much after its
last renewal plus the hold time of the call that renewed it."""
_MARGIN = 5.0
"""Seconds the owner stops using a lease before the database would let it lapse."""
_TRIES = 3
"""Renewals one call tries when other threads keep taking the room each renewal made."""


@dataclass(kw_only=True)
class _Lease:
    """This process's view of its lease on one day budget."""

    day: datetime
    granted: Spend
    """What the lease row allows the owner's calls to spend that day."""
    settled: Spend
    """What the owner's recorded calls under it spent (its attempts carry the owner)."""
    deadline: float
    """The process clock's time after which no new call may take from it (before renewal)."""
    capped: tuple[bool, bool]
    """Whether the budget limits dollars, tokens (an unlimited unit never runs out)."""


@dataclass(frozen=True, kw_only=True)
class _Held:
    call: Spend
    scopes: tuple[str, ...]


class BudgetLeases:
    """One process's leases on the day budgets, and the calls it holds against them.

    Thread-safe: one worker's tasks run in threads that all hold against the same leases.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        owner: str,
        calls: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.owner = owner[:80]
        """Names this process's leases and its attempts' calls (``attempts.budget_lease``)."""
        self.calls = max(1, calls)
        """Worst-case calls like the current one a renewal asks room for."""
        self._clock = clock
        self._lock = threading.Lock()
        self._renewing = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._held: dict[str, _Held] = {}

    def hold(self, key: str, call: Spend, budgets: Sequence[Budget], *, seconds: float) -> str:
        """Hold ``call`` against the day ``budgets`` from this process's leases, renewing
        those that cannot take it; '' when held, else why a budget refuses it.

        ``key`` names the call (a re-run step replaces its own hold); the call must end
        within ``seconds`` (its leases reserve for at least that long)."""
        scopes = tuple(b.scope for b in budgets)
        with self._lock:
            self._held.pop(key, None)
            if self._take(key, call, scopes, seconds):
                return ""
        for _ in range(_TRIES):
            with self._renewing:  # one renewal at a time in this process
                with self._lock:
                    if self._take(key, call, scopes, seconds):
                        return ""
                    in_flight = {scope: self._in_flight(scope) for scope in scopes}
                    settled = {
                        scope: lease.settled if (lease := self._current(scope)) else Spend()
                        for scope in scopes
                    }
                renewed = self._renew(key, budgets, call, seconds, in_flight, settled)
                if renewed is not None:
                    return renewed
                # Renewed, but calls of this process held against the old leases meanwhile
                # took the room (only calls of other sizes can): count again.
        return (
            f"{scopes[0]} budget: the room leased for this worker's calls kept being taken by "
            "its other calls; the next attempt asks again"
        )

    def settle(self, key: str, spent: Spend) -> None:
        """The call was recorded with what it really spent: that, not its worst case, now
        counts against its leases (the attempt row names this owner)."""
        with self._lock:
            held = self._held.pop(key, None)
            if held is None:
                return
            for scope in held.scopes:
                lease = self._leases.get(scope)
                if lease is not None:
                    lease.settled += spent

    def drop(self, key: str) -> None:
        """The call was never made (or failed before spending): its hold is released."""
        with self._lock:
            self._held.pop(key, None)

    def holding(self, key: str) -> bool:
        """Whether ``key``'s call is held against this process's leases."""
        with self._lock:
            return key in self._held

    def in_flight(self, scope: str) -> Spend:
        """The worst case of this process's calls in flight under its lease on ``scope``."""
        with self._lock:
            return self._in_flight(scope)

    def release(self) -> None:
        """Give the leases back (the runtime is closing): unless calls are still held, the
        lease rows go, and what the owner spent stays counted as spend."""
        with self._lock:
            if self._held or not self._leases:
                return
            self._leases.clear()
        with transaction(self.sessions) as session:
            session.execute(delete(BudgetLeaseRow).where(BudgetLeaseRow.owner == self.owner))

    # -- in memory, under self._lock ---------------------------------------------------------

    def _current(self, scope: str) -> _Lease | None:
        lease = self._leases.get(scope)
        return lease if lease is not None and lease.day == day_start() else None

    def _in_flight(self, scope: str) -> Spend:
        total = Spend()
        for held in self._held.values():
            if scope in held.scopes:
                total += held.call
        return total

    def _take(self, key: str, call: Spend, scopes: tuple[str, ...], seconds: float) -> bool:
        """Hold the call if every lease it needs is current, lasts the call out, and has room."""
        until = self._clock() + seconds
        for scope in scopes:
            lease = self._current(scope)
            if lease is None or until > lease.deadline:
                return False
            left = _minus(lease.granted, lease.settled + self._in_flight(scope))
            usd_capped, tokens_capped = lease.capped
            if (usd_capped and left.usd < call.usd) or (
                tokens_capped and left.tokens < call.tokens
            ):
                return False
        self._held[key] = _Held(call=call, scopes=scopes)
        return True

    # -- in the database, under the budgets' row locks -----------------------------------------

    def _renew(
        self,
        key: str,
        budgets: Sequence[Budget],
        call: Spend,
        seconds: float,
        in_flight: dict[str, Spend],
        settled: dict[str, Spend],
    ) -> str | None:
        """Lease room for ``call`` and ``calls`` more on every budget and hold the call: ''
        when held, why a budget refuses it, or None when the room went to other calls."""
        started, day = self._clock(), day_start()
        lasts = seconds + RENEW_SECONDS
        with transaction(self.sessions) as session:
            lock_rows(session, *(f"budget {b.scope}" for b in budgets))
            grants: dict[str, Spend] = {}
            for budget in budgets:
                # Everyone else's commitments, and this process's calls in flight (some may
                # be recorded already, and so counted twice: never missed).
                spent = committed(session, budget, exclude=self.owner) + in_flight[budget.scope]
                limit = Limit(
                    scope=budget.scope,
                    usd=None if budget.usd is None else Decimal(str(budget.usd)),
                    tokens=budget.tokens,
                    spent=spent,
                )
                reason = limit.broken_by(call)
                if reason:
                    return reason
                room = _room(limit, call, self.calls)
                grants[budget.scope] = settled[budget.scope] + in_flight[budget.scope] + room
            now = database_now(session)
            for budget in budgets:
                self._write(session, budget, day, grants[budget.scope], now, lasts)
        with self._lock:
            for budget in budgets:
                lease = self._current(budget.scope)
                self._leases[budget.scope] = _Lease(
                    day=day,
                    granted=grants[budget.scope],
                    settled=lease.settled if lease is not None else Spend(),
                    deadline=started + lasts - _MARGIN,
                    capped=(budget.usd is not None, budget.tokens is not None),
                )
            # In the same breath: calls held meanwhile were held against the old leases.
            return "" if self._take(key, call, tuple(b.scope for b in budgets), seconds) else None

    def _write(
        self,
        session: Session,
        budget: Budget,
        day: datetime,
        granted: Spend,
        now: datetime,
        lasts: float,
    ) -> None:
        key = f"{self.owner} {budget.scope} {day.date().isoformat()}"
        values = {"usd": granted.usd, "tokens": granted.tokens}
        values["expires_at"] = now + timedelta(seconds=lasts)
        insert_ignore(
            session,
            BudgetLeaseRow,
            {
                "id": key,
                "owner": self.owner,
                "scope": budget.scope,
                "domain": budget.domain,
                "day": day,
                **values,
            },
        )
        session.execute(update(BudgetLeaseRow).where(BudgetLeaseRow.id == key).values(**values))
        # Leases that lapsed reserve nothing; their owners' spend is in the attempts.
        session.execute(
            delete(BudgetLeaseRow).where(
                BudgetLeaseRow.scope == budget.scope, BudgetLeaseRow.expires_at <= now
            )
        )


def _minus(a: Spend, b: Spend) -> Spend:
    return Spend(usd=a.usd - b.usd, tokens=a.tokens - b.tokens)


def _room(limit: Limit, call: Spend, calls: int) -> Spend:
    """What a renewal leases beyond the calls in flight: room for ``calls`` calls like this
    one, at most ``SHARE`` of what the budget has left (but always this call), per unit."""
    usd = call.usd * calls
    if limit.usd is not None:
        free = limit.usd - limit.spent.usd
        usd = min(free, max(call.usd, min(usd, free * SHARE)))
    tokens = call.tokens * calls
    if limit.tokens is not None:
        free_tokens = limit.tokens - limit.spent.tokens
        tokens = min(free_tokens, max(call.tokens, min(tokens, int(free_tokens * SHARE))))
    return Spend(usd=usd, tokens=tokens)
