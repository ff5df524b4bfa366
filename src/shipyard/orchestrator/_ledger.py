"""The cost ledger: spend against each budget, pass rates per tier, and recorded generations.

Every attempt row carries its tokens and price, so the ledger is a set of queries over
``attempts``: a task's spend, a domain's and everyone's spend in the current UTC day, and
roll-ups per job kind, domain and day for ``shipyard budget``.

What a budget has committed is what was spent, plus what calls in flight may still spend:
holds (``budget_holds``) and what workers' day-budget leases still reserve
(``budget_leases``, see ``_leases``). ``hold`` sets one call's worst case aside: against
every budget under their rows' locks, or, given a worker's leases, against the task's own
budget here and the day budgets in the worker's leases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.config import Settings
from shipyard.errors import StateError
from shipyard.generate import GenerationRequest, Limit, Rate, Recorded, Spend
from shipyard.model import TaskState
from shipyard.store import (
    AttemptRow,
    BudgetHoldRow,
    BudgetLeaseRow,
    TaskRow,
    database_now,
    lock_rows,
    transaction,
)

__all__ = [
    "Budget",
    "BudgetLine",
    "BudgetReport",
    "Leases",
    "Rollup",
    "binding",
    "budget_report",
    "committed",
    "day_start",
    "drop_hold",
    "hold",
    "leased",
    "limits_for",
    "rates_for",
    "replay_lookup",
    "rollups",
    "spend",
]


class Leases(Protocol):
    """A worker's leases on the day budgets (``_leases.BudgetLeases``), as the ledger uses
    them: the worker's calls are held against them, and counted as its own."""

    @property
    def owner(self) -> str: ...

    def hold(self, key: str, call: Spend, budgets: Sequence[Budget], *, seconds: float) -> str: ...

    def in_flight(self, scope: str) -> Spend: ...


def day_start(now: datetime | None = None) -> datetime:
    """Midnight UTC of ``now``'s day: day budgets reset then."""
    now = now or datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def spend(
    session: Session, *, task_id: str = "", domain: str = "", since: datetime | None = None
) -> Spend:
    """Spend of the attempts matching every filter given."""
    query = select(
        func.coalesce(func.sum(AttemptRow.cost_usd), 0),
        func.coalesce(func.sum(AttemptRow.input_tokens + AttemptRow.output_tokens), 0),
    )
    if domain:
        query = query.join(TaskRow, TaskRow.id == AttemptRow.task_id).where(
            TaskRow.domain == domain
        )
    if task_id:
        query = query.where(AttemptRow.task_id == task_id)
    if since is not None:
        query = query.where(AttemptRow.generated_at >= since)
    usd, tokens = session.execute(query).one()
    return Spend(usd=Decimal(usd), tokens=int(tokens))


def held(
    session: Session,
    *,
    task_id: str = "",
    domain: str = "",
    since: datetime | None = None,
    unleased: bool = False,
) -> Spend:
    """Spend set aside for model calls in flight (unexpired holds) matching every filter;
    ``unleased``: only holds no day-budget lease covers (what a day budget counts)."""
    query = select(
        func.coalesce(func.sum(BudgetHoldRow.usd), 0),
        func.coalesce(func.sum(BudgetHoldRow.tokens), 0),
    ).where(BudgetHoldRow.expires_at > datetime.now(UTC))
    if domain:
        query = query.where(BudgetHoldRow.domain == domain)
    if task_id:
        query = query.where(BudgetHoldRow.task_id == task_id)
    if since is not None:
        query = query.where(BudgetHoldRow.created_at >= since)
    if unleased:
        query = query.where(BudgetHoldRow.lease == "")
    usd, tokens = session.execute(query).one()
    return Spend(usd=Decimal(usd), tokens=int(tokens))


def leased(session: Session, scope: str, domain: str, day: datetime, *, exclude: str = "") -> Spend:
    """What unexpired leases of a day budget still reserve: each lease less what its owner's
    attempts spent in the budget's scope that day (the leases of ``exclude`` left out)."""
    query = select(BudgetLeaseRow.owner, BudgetLeaseRow.usd, BudgetLeaseRow.tokens).where(
        BudgetLeaseRow.scope == scope,
        BudgetLeaseRow.day == day,
        BudgetLeaseRow.expires_at > database_now(session),
    )
    if exclude:
        query = query.where(BudgetLeaseRow.owner != exclude)
    leases = session.execute(query).all()
    if not leases:
        return Spend()
    spent = select(
        AttemptRow.budget_lease,
        func.coalesce(func.sum(AttemptRow.cost_usd), 0),
        func.coalesce(func.sum(AttemptRow.input_tokens + AttemptRow.output_tokens), 0),
    ).where(
        AttemptRow.budget_lease.in_([owner for owner, _, _ in leases]),
        AttemptRow.generated_at >= day,
    )
    if domain:
        spent = spent.join(TaskRow, TaskRow.id == AttemptRow.task_id).where(
            TaskRow.domain == domain
        )
    by_owner = {
        owner: (Decimal(usd), int(tokens))
        for owner, usd, tokens in session.execute(spent.group_by(AttemptRow.budget_lease)).all()
    }
    reserved = Spend()
    for owner, usd, tokens in leases:
        used_usd, used_tokens = by_owner.get(owner, (Decimal(0), 0))
        reserved += Spend(usd=max(Decimal(0), usd - used_usd), tokens=max(0, tokens - used_tokens))
    return reserved


def committed(session: Session, budget: Budget, *, exclude: str = "") -> Spend:
    """What a budget has committed: spent, held for calls in flight, and (a day budget)
    reserved by leases, the leases of ``exclude`` left out.

    Read in this order so that a call recorded meanwhile (its attempt written, its hold or
    lease reserve released in the same transaction) is counted twice rather than missed:
    each statement sees what was committed when it began.
    """
    since = day_start() if budget.daily else None
    total = Spend()
    if budget.daily:
        total += leased(session, budget.scope, budget.domain, since or day_start(), exclude=exclude)
    total += held(
        session,
        task_id=budget.task_id,
        domain=budget.domain,
        since=since,
        unleased=budget.daily,
    )
    return total + spend(session, task_id=budget.task_id, domain=budget.domain, since=since)


def hold(
    sessions: sessionmaker[Session],
    settings: Settings,
    task_id: str,
    key: str,
    call: Spend,
    *,
    seconds: float,
    leases: Leases | None = None,
) -> str:
    """Set ``call``'s worst case aside against every budget binding the task.

    Returns '' when held, else why the call would break a budget. ``key`` names the call (a
    re-run step replaces its own hold); the hold lapses after ``seconds`` if its worker dies
    mid-call. Without ``leases``, the budgets' rows are locked while what they committed is
    summed and the hold is written, so two workers can never both take the last of a budget.
    With a worker's ``leases``, only the task's own budget is held that way (its row is the
    task's, locked by no other task); the day budgets take the call from the worker's leases,
    which touch the shared rows only to lease more.
    """
    with transaction(sessions) as session:
        task = session.get(TaskRow, task_id)
        if task is None:
            raise StateError(f"task {task_id} vanished from the database")
        bound = binding(settings, task)
        shared = [b for b in bound if b.daily] if leases is not None else []
        here = [b for b in bound if b not in shared]
        if here:
            reason = _hold_rows(session, task, key, call, here, seconds, leases)
            if reason:
                return reason
    if not shared or leases is None:
        return ""
    reason = leases.hold(key, call, shared, seconds=seconds)
    if reason and here:
        with transaction(sessions) as session:
            drop_hold(session, key)
    return reason


def _hold_rows(
    session: Session,
    task: TaskRow,
    key: str,
    call: Spend,
    budgets: list[Budget],
    seconds: float,
    leases: Leases | None,
) -> str:
    """Hold ``call`` against ``budgets`` under their rows' locks (a ``budget_holds`` row)."""
    lock_rows(session, *(f"budget {b.scope}" for b in budgets))
    session.execute(delete(BudgetHoldRow).where(BudgetHoldRow.id == key))
    for budget in budgets:
        reason = _limit(budget, committed(session, budget)).broken_by(call)
        if reason:
            return reason
    now = datetime.now(UTC)
    session.add(
        BudgetHoldRow(
            id=key,
            task_id=task.id,
            domain=task.domain,
            usd=call.usd,
            tokens=call.tokens,
            created_at=now,
            expires_at=now + timedelta(seconds=seconds),
            lease=leases.owner if leases is not None else "",
        )
    )
    return ""


def drop_hold(session: Session, key: str) -> None:
    """The call is recorded (its attempt carries the real spend) or was never made."""
    session.execute(delete(BudgetHoldRow).where(BudgetHoldRow.id == key))


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True, kw_only=True)
class Budget:
    """A budget that binds a task: its scope, limits, and the spend filters it counts."""

    scope: str
    usd: float | None
    tokens: int | None
    task_id: str = ""
    domain: str = ""
    daily: bool = False


def binding(settings: Settings, task: TaskRow) -> list[Budget]:
    """The budgets set for this task (its own, its domain's today, everyone's today)."""
    found: list[Budget] = []
    budgets = settings.budgets
    if budgets.task_usd is not None or budgets.task_tokens is not None:
        found.append(
            Budget(
                scope=f"task {task.id}",
                usd=budgets.task_usd,
                tokens=budgets.task_tokens,
                task_id=task.id,
            )
        )
    domain = settings.domains.get(task.domain)
    if domain is not None and (domain.day_usd is not None or domain.day_tokens is not None):
        found.append(
            Budget(
                scope=f"domain {task.domain} today",
                usd=domain.day_usd,
                tokens=domain.day_tokens,
                domain=task.domain,
                daily=True,
            )
        )
    if budgets.day_usd is not None or budgets.day_tokens is not None:
        found.append(
            Budget(
                scope="all domains today",
                usd=budgets.day_usd,
                tokens=budgets.day_tokens,
                daily=True,
            )
        )
    return found


def limits_for(
    session: Session, settings: Settings, task: TaskRow, *, leases: Leases | None = None
) -> list[Limit]:
    """The budgets that bind this task's next call, each with what is committed against it.

    Seen from a worker with ``leases``: what its own leases still reserve is its to spend, so
    only its calls in flight count, not the rest of its leases."""
    limits = []
    for budget in binding(settings, task):
        if leases is not None and budget.daily:
            spent = committed(session, budget, exclude=leases.owner) + leases.in_flight(
                budget.scope
            )
        else:
            spent = committed(session, budget)
        limits.append(_limit(budget, spent))
    return limits


def _limit(budget: Budget, spent: Spend) -> Limit:
    return Limit(scope=budget.scope, usd=_decimal(budget.usd), tokens=budget.tokens, spent=spent)


def rates_for(
    session: Session, job_kind: str, tiers: Sequence[str], *, window: int
) -> dict[str, Rate]:
    """Each tier's pass record over its last ``window`` checked attempts of ``job_kind``."""
    rates: dict[str, Rate] = {}
    for tier in tiers:
        outcomes = session.scalars(
            select(AttemptRow.passed)
            .join(TaskRow, TaskRow.id == AttemptRow.task_id)
            .where(
                TaskRow.job_kind == job_kind,
                AttemptRow.tier == tier,
                AttemptRow.passed.is_not(None),
            )
            .order_by(AttemptRow.id.desc())
            .limit(window)
        ).all()
        rates[tier] = Rate(passed=sum(1 for ok in outcomes if ok), rated=len(outcomes))
    return rates


def replay_lookup(
    sessions: sessionmaker[Session],
) -> Callable[[GenerationRequest], Recorded | None]:
    """For the replay provider: the latest earlier generation of the same work.

    The same work is the same job kind with the same inputs (by hash). The attempt with the
    same number is preferred; a shorter earlier run offers its last generation.
    """

    def lookup(request: GenerationRequest) -> Recorded | None:
        with sessions() as session:
            inputs_hash = session.scalar(
                select(TaskRow.inputs_hash).where(TaskRow.id == request.task_id)
            )
            rows = session.execute(
                select(AttemptRow, TaskRow.submitted_at)
                .join(TaskRow, TaskRow.id == AttemptRow.task_id)
                .where(
                    TaskRow.job_kind == request.kind.name,
                    TaskRow.inputs_hash == inputs_hash,
                    TaskRow.id != request.task_id,
                    AttemptRow.provider != "replay",
                    AttemptRow.number <= request.attempt,
                )
                .order_by(TaskRow.submitted_at.desc(), AttemptRow.number.desc())
            ).all()
        for row, _ in rows:
            if row.files:
                return Recorded(
                    task_id=row.task_id,
                    attempt=row.number,
                    provider=row.provider,
                    model=row.model,
                    files=dict(row.files),
                    reply=row.reply,
                    finish_reason=row.finish_reason,
                )
        return None

    return lookup


@dataclass(frozen=True, kw_only=True)
class Rollup:
    """Spend grouped by one key (a job kind, a domain, a day)."""

    key: str
    attempts: int
    input_tokens: int
    output_tokens: int
    usd: Decimal
    unpriced: int
    """Attempts that spent tokens on a model with no known price (counted as $0)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "attempts": self.attempts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "usd": str(self.usd),
            "unpriced": self.unpriced,
        }


def rollups(session: Session, *, by: str, days: int = 7) -> list[Rollup]:
    """Spend of the last ``days`` days (UTC) per job kind, domain or day."""
    since = day_start() - timedelta(days=days - 1)
    rows = session.execute(
        select(
            TaskRow.job_kind,
            TaskRow.domain,
            AttemptRow.generated_at,
            AttemptRow.input_tokens,
            AttemptRow.output_tokens,
            AttemptRow.cost_usd,
            AttemptRow.cost_source,
        )
        .join(TaskRow, TaskRow.id == AttemptRow.task_id)
        .where(AttemptRow.generated_at >= since)
    ).all()
    groups: dict[str, list[Any]] = {}
    for job_kind, domain, at, tokens_in, tokens_out, usd, source in rows:
        key = {"job_kind": job_kind, "domain": domain, "day": _day(at).isoformat()}[by]
        group = groups.setdefault(key, [0, 0, 0, Decimal(0), 0])
        group[0] += 1
        group[1] += tokens_in
        group[2] += tokens_out
        group[3] += Decimal(usd)
        group[4] += source == "unknown"
    return [
        Rollup(key=key, attempts=a, input_tokens=i, output_tokens=o, usd=u, unpriced=n)
        for key, (a, i, o, u, n) in sorted(groups.items())
    ]


def _day(at: datetime) -> date:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return at.astimezone(UTC).date()


@dataclass(frozen=True, kw_only=True)
class BudgetLine:
    """One budget with today's spend against it, for ``shipyard budget``."""

    scope: str
    usd: Decimal | None
    tokens: int | None
    spent: Spend
    paused: int
    """Tasks paused on this budget."""

    @property
    def exhausted(self) -> bool:
        return (self.usd is not None and self.spent.usd >= self.usd) or (
            self.tokens is not None and self.spent.tokens >= self.tokens
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "limit_usd": None if self.usd is None else str(self.usd),
            "limit_tokens": self.tokens,
            "spent_usd": str(self.spent.usd),
            "spent_tokens": self.spent.tokens,
            "paused": self.paused,
            "exhausted": self.exhausted,
        }


@dataclass(frozen=True, kw_only=True)
class BudgetReport:
    limits: list[BudgetLine]
    rollups: dict[str, list[Rollup]]
    unpriced: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "limits": [line.to_dict() for line in self.limits],
            "rollups": {by: [r.to_dict() for r in rows] for by, rows in self.rollups.items()},
            "unpriced": self.unpriced,
        }


def budget_report(session: Session, settings: Settings, *, days: int = 7) -> BudgetReport:
    """Every budget with today's spend, and spend per job kind, domain and day."""
    today = day_start()
    paused = [
        error
        for error in session.scalars(
            select(TaskRow.error).where(TaskRow.state == TaskState.PAUSED)
        ).all()
    ]

    def line(
        scope: str, usd: float | None, tokens: int | None, spent: Spend, key: str
    ) -> BudgetLine:
        return BudgetLine(
            scope=scope,
            usd=_decimal(usd),
            tokens=tokens,
            spent=spent,
            paused=sum(1 for error in paused if key in error),
        )

    budgets = settings.budgets
    lines = [
        line(
            "all domains today",
            budgets.day_usd,
            budgets.day_tokens,
            spend(session, since=today),
            "all domains today",
        )
    ]
    for name, domain in settings.domains.items():
        scope = f"domain {name} today"
        lines.append(
            line(
                scope,
                domain.day_usd,
                domain.day_tokens,
                spend(session, domain=name, since=today),
                scope,
            )
        )
    largest = session.execute(
        select(
            AttemptRow.task_id,
            func.sum(AttemptRow.cost_usd),
            func.sum(AttemptRow.input_tokens + AttemptRow.output_tokens),
        )
        .where(AttemptRow.generated_at >= today)
        .group_by(AttemptRow.task_id)
        .order_by(func.sum(AttemptRow.cost_usd).desc())
        .limit(1)
    ).first()
    top = Spend(usd=Decimal(largest[1]), tokens=int(largest[2])) if largest else Spend()
    lines.append(
        line(
            f"per task (largest today: {largest[0]})" if largest else "per task",
            budgets.task_usd,
            budgets.task_tokens,
            top,
            "task ",
        )
    )
    groups = {by: rollups(session, by=by, days=days) for by in ("job_kind", "domain", "day")}
    return BudgetReport(
        limits=lines, rollups=groups, unpriced=sum(r.unpriced for r in groups["day"])
    )
