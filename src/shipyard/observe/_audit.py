"""The audit log: every decision and effect, append-only, in hash chains anchored together.

An entry's hash is SHA-256 over the previous entry's hash and the entry's own fields in
canonical JSON, so changing, removing or inserting an entry breaks the chain from there on.
An entry is written in the same transaction as the decision or effect it records.

One chain for the whole project would make every append, from every worker, wait for the
one before it to commit: its head row is locked from the append to the end of the caller's
transaction, which on a busy fleet is where tasks queue. So the log is a few chains, *lanes*,
appended to side by side. An append locks one lane's head: on PostgreSQL the first head no
other transaction holds (``FOR UPDATE SKIP LOCKED``), or a new lane when all are held, so an
append never waits for another and there are only as many lanes as appends were ever in
flight at once. SQLite lets one transaction write at a time anyway, so there every entry goes
to lane 1 (the single chain written before lanes, which continues as lane 1).

Lanes keep each other honest: a lane's first entry and every ``ANCHOR_EVERY``-th entry record
the other lanes' heads (length, last hash and number) in its ``anchors``, covered by its hash.
Cutting entries off a lane's end and fixing its head row to match, or rewriting a lane with
hashes recomputed, then disagrees with what the other lanes anchored. Entries are numbered
across lanes (``seq``: unique and rising in append order, from a sequence on PostgreSQL, not
gapless); within its lane each has a gapless place (``lane_seq``) and names its
predecessor (``prev_seq``), so a missing entry is named exactly.

We chose lanes over batched appends under a Merkle root because a batch needs a sealer that
owns the order (one process, or a lock again) and leaves entries unsealed until it runs,
whereas a lane entry is complete and verifiable the moment its transaction commits, exactly
as before. ``verify`` recomputes every lane from its genesis hash, checks each against its
head row and every anchor, and names the first entry (by ``seq``) that does not fit.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Row, Select, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from shipyard.store import AuditHeadRow, AuditRow

__all__ = [
    "ANCHOR_EVERY",
    "GENESIS",
    "AuditCheck",
    "append",
    "entries",
    "entry",
    "export",
    "head",
    "lane_genesis",
    "page",
    "verify",
]

GENESIS = "0" * 64
"""The hash lane 1's first entry chains to (the single chain's, before lanes)."""
ANCHOR_EVERY = 16
"""A lane's every 16th entry (and its first) anchors the other lanes' heads."""
FORMAT = 2
"""Entries written now: hashed over ``lane``, ``lane_seq``, ``prev_seq`` and ``anchors`` too."""


def lane_genesis(lane: int) -> str:
    """The hash a lane's first entry chains to (bound to the lane, so lanes never share one)."""
    if lane == 1:
        return GENESIS
    return hashlib.sha256(f"shipyard audit lane {lane}".encode()).hexdigest()


def _digest(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _fields(row: AuditRow) -> dict[str, Any]:
    fields = {
        "seq": row.seq,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "resource": row.resource,
        "decision": row.decision,
        "reason": row.reason,
        "task_id": row.task_id,
        "detail": row.detail,
    }
    if row.format != 1:  # a changed format changes what is hashed: the hash tells
        fields |= {
            "lane": row.lane,
            "lane_seq": row.lane_seq,
            "prev_seq": row.prev_seq,
            "anchors": row.anchors or {},
        }
    return fields


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    resource: str,
    decision: str,
    reason: str = "",
    task_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditRow:
    """Add one entry in the caller's transaction (it commits or rolls back with it).

    The entry's lane stays locked until the caller's transaction ends; appends in other
    transactions take other lanes meanwhile (on SQLite they wait for the write lock)."""
    lane, last_seq, count, last_hash = _take_lane(session)
    place = count + 1
    anchors = _anchors(session, lane) if place == 1 or place % ANCHOR_EVERY == 0 else None
    # Numbered after the anchors were read: every entry an anchor names has a lower number.
    seq = last_seq + 1 if _sqlite(session) else _next(session, "audit_seq")
    row = AuditRow(
        seq=seq,
        at=datetime.now(UTC).isoformat(timespec="microseconds"),
        actor=actor[:200],
        action=action[:40],
        resource=resource[:300],
        decision=decision[:40],
        reason=reason,
        task_id=task_id,
        detail=json.loads(json.dumps(detail or {}, default=str)),
        prev_hash=last_hash,
        lane=lane,
        lane_seq=place,
        prev_seq=last_seq,
        anchors=anchors,
        format=FORMAT,
    )
    row.hash = _digest(row.prev_hash, _fields(row))
    session.add(row)
    session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == lane)
        .values(seq=seq, entries=place, hash=row.hash)
    )
    return row


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _take_lane(session: Session) -> tuple[int, int, int, str]:
    """Lock a lane's head for this transaction: (lane, last seq, entries, last hash)."""
    if _sqlite(session):
        # The UPDATE takes SQLite's write lock before anything is read: appends queue here.
        found = session.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == 1)
            .values(entries=AuditHeadRow.entries)
            .returning(AuditHeadRow.id, AuditHeadRow.seq, AuditHeadRow.entries, AuditHeadRow.hash)
        ).one()
        return _lane(found)
    free = session.execute(
        select(AuditHeadRow.id, AuditHeadRow.seq, AuditHeadRow.entries, AuditHeadRow.hash)
        .order_by(AuditHeadRow.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if free is not None:
        return _lane(free)
    # Every lane is held by a transaction in flight: open another (the new row is this
    # transaction's until it commits, so no one else can take it meanwhile).
    lane = _next(session, "audit_lanes")
    genesis = lane_genesis(lane)
    session.execute(insert(AuditHeadRow).values(id=lane, seq=0, entries=0, hash=genesis))
    return lane, 0, 0, genesis


def _next(session: Session, sequence: str) -> int:
    """The next number of a PostgreSQL sequence (taken at once, never waiting on anyone)."""
    return int(session.execute(select(func.nextval(sequence))).scalar_one())


def _lane(found: Row[int, int, int, str]) -> tuple[int, int, int, str]:
    return int(found.id), int(found.seq), int(found.entries), str(found.hash)


def _anchors(session: Session, lane: int) -> dict[str, Any] | None:
    """The other lanes' heads as committed now, ``{lane: [entries, last hash, last seq]}``
    (None if there are none)."""
    heads = session.execute(
        select(AuditHeadRow.id, AuditHeadRow.entries, AuditHeadRow.hash, AuditHeadRow.seq).where(
            AuditHeadRow.id != lane, AuditHeadRow.entries > 0
        )
    ).all()
    return {str(h.id): [int(h.entries), str(h.hash), int(h.seq)] for h in heads} or None


def head() -> Select[int, str]:
    """The query for the newest entry's sequence number and hash (0 and the genesis hash
    while the log is empty)."""
    return select(AuditHeadRow.seq, AuditHeadRow.hash).order_by(AuditHeadRow.seq.desc()).limit(1)


def entries(session: Session, *, task_id: str = "", batch: int = 1000) -> Iterator[AuditRow]:
    """Entries in the order they were appended (of one task when given), read in batches."""
    last = 0
    while True:
        query = select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(batch)
        if task_id:
            query = query.where(AuditRow.task_id == task_id)
        rows = session.scalars(query).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def page(session: Session, *, offset: int, limit: int) -> list[AuditRow]:
    """Entries in order, ``limit`` of them from the ``offset``-th."""
    return list(
        session.scalars(select(AuditRow).order_by(AuditRow.seq).offset(offset).limit(limit)).all()
    )


@dataclass(frozen=True, kw_only=True)
class AuditCheck:
    ok: bool
    entries: int
    """Entries found intact (when broken: those numbered before the first broken one)."""
    first_broken: int | None = None
    """The sequence number of the first entry that does not fit, if any (for entries cut off
    a lane's end: the last one its head or an anchor names)."""
    problem: str = ""
    lanes: int = 0
    """Lanes checked."""


def verify(session: Session) -> AuditCheck:
    """Recompute every lane from its genesis hash; check it against its head and anchors.

    Names the first entry, by sequence number, that does not fit: one changed after it was
    written, one missing (a gap in its lane), one that does not chain to its predecessor
    (inserted or moved), entries cut off a lane's end (its head says more), or a lane that
    differs from what another lane anchored (rewritten, or cut short with its head fixed).
    """
    heads = {int(h.id): h for h in session.execute(_HEADS).all()}
    anchored = _anchored(session)
    lanes: dict[int, _Lane] = {}
    for row in _in_lane_order(session):
        state = lanes.setdefault(row.lane, _Lane(row.lane))
        if state.problem is None:
            state.take(row, anchored.get((row.lane, row.lane_seq), []))
    problems = [lane.problem for lane in lanes.values() if lane.problem is not None]
    problems += _heads_problems(heads, lanes)
    problems += _anchor_problems(anchored, lanes)
    intact = sum(len(lane.seqs) for lane in lanes.values())
    if not problems:
        return AuditCheck(ok=True, entries=intact, lanes=len(heads))
    seq, text = min(problems)
    before = sum(sum(1 for s in lane.seqs if s < seq) for lane in lanes.values())
    return AuditCheck(ok=False, entries=before, first_broken=seq, problem=text, lanes=len(heads))


_HEADS = select(AuditHeadRow.id, AuditHeadRow.seq, AuditHeadRow.entries, AuditHeadRow.hash)


@dataclass(frozen=True, kw_only=True)
class _Anchor:
    """What one entry recorded of another lane: the hash and number of its entry at a place."""

    hash: str
    seq: int
    by: int
    """The anchoring entry's sequence number."""
    by_lane: int
    by_place: int


def _anchored(session: Session) -> dict[tuple[int, int], list[_Anchor]]:
    """Every anchor, by the (lane, place) it names."""
    found: dict[tuple[int, int], list[_Anchor]] = {}
    rows = session.execute(
        select(AuditRow.seq, AuditRow.lane, AuditRow.lane_seq, AuditRow.anchors).where(
            AuditRow.anchors.is_not(None)
        )
    ).all()
    for seq, lane, place, anchors in rows:
        for other, (count, hash_, anchored_seq) in (anchors or {}).items():
            anchor = _Anchor(
                hash=str(hash_), seq=int(anchored_seq), by=seq, by_lane=lane, by_place=place
            )
            found.setdefault((int(other), int(count)), []).append(anchor)
    return found


@dataclass
class _Lane:
    """One lane as ``verify`` walks it: how far it is intact, and its first problem."""

    lane: int
    count: int = 0
    last_hash: str = ""
    last_seq: int = 0
    seqs: array[int] = field(default_factory=lambda: array("q"))
    """The intact entries' sequence numbers, in lane order."""
    problem: tuple[int, str] | None = None
    mismatched: list[tuple[int, str, _Anchor]] = field(default_factory=list)
    """Entries unlike what an anchor recorded (held until the anchoring entry is known good)."""

    def __post_init__(self) -> None:
        self.last_hash = lane_genesis(self.lane)

    def take(self, row: AuditRow, anchors: list[_Anchor]) -> None:
        place = self.count + 1
        if row.lane_seq != place:
            self.problem = self._gap(row, place)
        elif row.prev_hash != self.last_hash or (row.format != 1 and row.prev_seq != self.last_seq):
            before = f"entry {self.last_seq}'s hash" if self.count else "its lane's genesis hash"
            self.problem = (row.seq, f"entry {row.seq} does not chain to {before}")
        elif _digest(row.prev_hash, _fields(row)) != row.hash:
            self.problem = (
                row.seq,
                f"entry {row.seq} was changed after it was written "
                "(its hash does not match its content)",
            )
        else:
            for anchor in anchors:
                if (anchor.hash, anchor.seq) != (row.hash, row.seq):
                    text = (
                        f"entry {row.seq} is not the entry that entry {anchor.by} recorded as "
                        f"lane {self.lane}'s {place}th: the lane was rewritten"
                    )
                    self.mismatched.append((row.seq, text, anchor))
            self.count, self.last_hash, self.last_seq = place, row.hash, row.seq
            self.seqs.append(row.seq)

    def _gap(self, row: AuditRow, place: int) -> tuple[int, str]:
        if row.format == 1:  # the single chain's entries: a place is a sequence number
            return place, f"entry {place} is missing (the next one is {row.seq})"
        if row.lane_seq == place + 1:
            return row.prev_seq, f"entry {row.prev_seq} is missing (the next one is {row.seq})"
        return row.prev_seq, (
            f"entries {place} to {row.lane_seq - 1} of lane {self.lane} are missing (the last "
            f"of them was entry {row.prev_seq}, the next one is {row.seq})"
        )

    def intact_at(self, place: int) -> bool:
        return place <= self.count


def _in_lane_order(session: Session, batch: int = 1000) -> Iterator[AuditRow]:
    """Every entry, lane by lane, each lane in order, read in batches."""
    lane, place = 0, 0
    while True:
        rows = session.scalars(
            select(AuditRow)
            .where(
                or_(AuditRow.lane > lane, and_(AuditRow.lane == lane, AuditRow.lane_seq > place))
            )
            .order_by(AuditRow.lane, AuditRow.lane_seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        lane, place = rows[-1].lane, rows[-1].lane_seq


def _heads_problems(
    heads: dict[int, Row[int, int, int, str]], lanes: dict[int, _Lane]
) -> list[tuple[int, str]]:
    """Each intact lane against its head row: entries cut off its end, or past its head."""
    problems: list[tuple[int, str]] = []
    for number in sorted(set(heads) | set(lanes)):
        lane, found = lanes.get(number, _Lane(number)), heads.get(number)
        if lane.problem is not None:
            continue
        if found is None:
            first = lane.seqs[0]
            problems.append((first, f"entry {first} is in lane {number}, which has no head"))
            continue
        ends = f"ends at entry {lane.last_seq}" if lane.count else "has no entries"
        if int(found.entries) > lane.count:
            problems.append(
                (
                    int(found.seq),
                    f"lane {number} {ends} but its head says entry {found.seq}: "
                    "entries were removed from the end",
                )
            )
        elif int(found.entries) < lane.count:
            past = lane.seqs[int(found.entries)]
            problems.append(
                (past, f"entry {past} is past lane {number}'s head: it was added afterwards")
            )
        elif (str(found.hash), int(found.seq)) != (lane.last_hash, lane.last_seq):
            problems.append(
                (
                    int(found.seq),
                    f"lane {number}'s head names entry {found.seq}, but the lane {ends}",
                )
            )
    return problems


def _anchor_problems(
    anchored: dict[tuple[int, int], list[_Anchor]], lanes: dict[int, _Lane]
) -> list[tuple[int, str]]:
    """What anchors recorded and the lanes no longer hold; anchors count only from entries
    found intact (a changed entry is reported as itself, not through what it claims)."""

    def good(anchor: _Anchor) -> bool:
        by = lanes.get(anchor.by_lane)
        return by is not None and by.intact_at(anchor.by_place)

    problems = [
        (seq, text)
        for lane in lanes.values()
        for seq, text, anchor in lane.mismatched
        if good(anchor)
    ]
    for (number, place), anchors in anchored.items():
        lane = lanes.get(number, _Lane(number))
        if lane.problem is not None or place <= lane.count:
            continue
        for anchor in filter(good, anchors):
            problems.append(
                (
                    anchor.seq,
                    f"entry {anchor.seq} is missing: entry {anchor.by} recorded lane {number} "
                    f"up to it ({place} entries), but the lane holds {lane.count}: entries were "
                    "removed from the end",
                )
            )
    return problems


def entry(row: AuditRow) -> dict[str, Any]:
    """An entry as plain data, with its hash and its predecessor's (what export writes)."""
    return _fields(row) | {"prev_hash": row.prev_hash, "hash": row.hash}


def export(session: Session, out: TextIO, *, task_id: str = "") -> int:
    """Write entries as JSON Lines (with their hashes); the count written."""
    written = 0
    for row in entries(session, task_id=task_id):
        out.write(json.dumps(entry(row)) + "\n")
        written += 1
    return written
