"""The audit log's lanes: appends from many threads and processes at once make one log that
verifies, every kind of tampering in any lane is named, and the single chain written before
lanes stays verifiable and grows on."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, Engine, column, delete, func, insert, select, table, update
from sqlalchemy.orm import Session, sessionmaker

import shipyard.store
from shipyard.observe import audit
from shipyard.observe._audit import _digest, _fields
from shipyard.store import (
    AuditHeadRow,
    AuditRow,
    make_engine,
    migrate,
    session_factory,
    transaction,
)


def _url(database: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}" if database == "sqlite" else database


@pytest.fixture
def engine(database: str, tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(_url(database, tmp_path))
    migrate(made)
    yield made
    made.dispose()


def _append(session: Session, actor: str, n: int) -> AuditRow:
    return audit.append(
        session, actor=actor, action="call_tool", resource=f"tool t{n}", decision="done",
        reason=f"call {n}", task_id=f"t-{actor}", detail={"n": n},
    )  # fmt: skip


_PROCESS = """
import sys
from shipyard.observe import audit
from shipyard.store import make_engine, session_factory, transaction

engine = make_engine(sys.argv[1])
sessions = session_factory(engine)
for n in range(int(sys.argv[3])):
    with transaction(sessions) as session:
        audit.append(session, actor=sys.argv[2], action="call_tool", resource=f"tool t{n}",
                     decision="done", reason=f"call {n}", task_id="t-" + sys.argv[2])
engine.dispose()
"""


def test_appends_from_threads_and_processes_at_once_make_one_log_that_verifies(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    url = _url(database, tmp_path)
    postgres = engine.dialect.name == "postgresql"
    threads, processes, each = 4, 2, 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, url, f"process-{n}", str(each)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for n in range(processes)
    ]
    # On PostgreSQL the threads' first appends wait for each other before committing, so
    # four transactions hold an entry at once: four lanes at least.
    together = threading.Barrier(threads)
    engines = [make_engine(url) for _ in range(threads)]
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            sessions = session_factory(engines[n])
            for i in range(each):
                with transaction(sessions) as session:
                    _append(session, f"thread-{n}", i)
                    if postgres and i == 0:
                        together.wait(timeout=60)
        except BaseException as exc:  # reported below, with the thread's name
            failures.append(exc)

    running = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=120)
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for made in engines:
        made.dispose()
    assert not failures, failures

    sessions = session_factory(engine)
    with sessions() as session:
        check = audit.verify(session)
        by_actor = dict(
            session.execute(select(AuditRow.actor, func.count()).group_by(AuditRow.actor)).all()
        )
        seqs = session.scalars(select(AuditRow.seq).order_by(AuditRow.seq)).all()
    total = (threads + processes) * each
    assert check.ok, check
    assert check.entries == total
    assert by_actor == {
        **{f"thread-{n}": each for n in range(threads)},
        **{f"process-{n}": each for n in range(processes)},
    }
    assert len(set(seqs)) == total
    if postgres:
        assert check.lanes >= threads  # appends in flight together took lanes of their own
    else:
        assert check.lanes == 1  # one writer at a time: one lane


# -- tampering, lane by lane (PostgreSQL: only there do appends run side by side) -----------


ROUNDS = 20


@pytest.fixture
def three_lanes(postgres: str) -> Iterator[sessionmaker[Session]]:
    """A log of three lanes of 20 entries each: every round, three transactions each append
    one entry before any commits (so each takes a lane of its own: 1, 2 and 3 in order)."""
    engine = make_engine(postgres)
    migrate(engine)
    sessions = session_factory(engine)
    for round_ in range(ROUNDS):
        open_ = [sessions() for _ in range(3)]
        for lane, session in enumerate(open_, start=1):
            session.begin()
            row = _append(session, f"lane-{lane}", round_)
            assert row.lane == lane
        for session in open_:
            session.commit()
            session.close()
    with sessions() as session:
        assert audit.verify(session).ok
    yield sessions
    engine.dispose()


def _lane(session: Session, lane: int) -> list[AuditRow]:
    return list(
        session.scalars(
            select(AuditRow).where(AuditRow.lane == lane).order_by(AuditRow.lane_seq)
        ).all()
    )


def _tampered(
    sessions: sessionmaker[Session], change: Callable[[Session], Any]
) -> audit.AuditCheck:
    """What verify says after ``change``, which is rolled back afterwards."""
    with sessions() as session, session.begin():
        change(session)
        session.flush()
        check = audit.verify(session)
        session.rollback()
    return check


def _rehash(session: Session, rows: list[AuditRow], prev: str) -> None:
    """Recompute ``rows`` (consecutive in one lane) from ``prev``, and their lane's head, as
    someone rewriting the lane would."""
    for row in rows:
        row.prev_hash = prev
        row.hash = _digest(prev, _fields(row))
        prev = row.hash
    session.flush()
    last = rows[-1]
    session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == last.lane)
        .values(seq=last.seq, entries=last.lane_seq, hash=last.hash)
    )


def test_a_changed_entry_in_any_lane_is_named(three_lanes: sessionmaker[Session]) -> None:
    with three_lanes() as session:
        target = _lane(session, 2)[6]

    def change(session: Session) -> None:
        session.execute(update(AuditRow).where(AuditRow.seq == target.seq).values(actor="x"))

    check = _tampered(three_lanes, change)
    assert (check.ok, check.first_broken) == (False, target.seq)
    assert "changed after it was written" in check.problem


def test_a_removed_entry_is_named_by_its_number(three_lanes: sessionmaker[Session]) -> None:
    with three_lanes() as session:
        rows = _lane(session, 3)
    gone, after = rows[4], rows[5]

    check = _tampered(
        three_lanes, lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == gone.seq))
    )
    assert (check.ok, check.first_broken) == (False, gone.seq)
    assert f"entry {gone.seq} is missing (the next one is {after.seq})" in check.problem


def test_an_inserted_entry_is_named(three_lanes: sessionmaker[Session]) -> None:
    with three_lanes() as session:
        rows = _lane(session, 2)
        top = session.scalar(select(func.max(AuditRow.seq)))
    assert top is not None

    def forged(place: int, before: AuditRow) -> AuditRow:
        row = AuditRow(
            seq=top + 1, at=before.at, actor="mallory", action="approve", resource="task t",
            decision="approved", reason="", task_id="t", detail={}, lane=2, lane_seq=place,
            prev_seq=before.seq, anchors=None, format=2, prev_hash=before.hash,
        )  # fmt: skip
        row.hash = _digest(row.prev_hash, _fields(row))
        return row

    def in_the_middle(session: Session) -> None:
        # Make room at place 10 (two steps: the places are unique), forge an entry there that
        # chains to the 9th, and point the old 10th at it (no two entries may chain to one).
        lane2 = (AuditRow.lane == 2, AuditRow.lane_seq >= 10)
        session.execute(update(AuditRow).where(*lane2).values(lane_seq=-AuditRow.lane_seq - 1))
        session.execute(
            update(AuditRow)
            .where(AuditRow.lane == 2, AuditRow.lane_seq < 0)
            .values(lane_seq=-AuditRow.lane_seq)
        )
        inserted = forged(10, rows[8])
        session.execute(
            update(AuditRow)
            .where(AuditRow.seq == rows[9].seq)
            .values(prev_hash=inserted.hash, prev_seq=inserted.seq)
        )
        session.add(inserted)

    check = _tampered(three_lanes, in_the_middle)
    assert (check.ok, check.first_broken) == (False, rows[9].seq)
    assert f"entry {rows[9].seq} was changed after it was written" in check.problem

    def moved(session: Session) -> None:
        # An entry of lane 3 moved into lane 2's place 10: it does not chain there.
        session.execute(delete(AuditRow).where(AuditRow.seq == rows[9].seq))
        other = _lane(session, 3)[9]
        session.execute(
            update(AuditRow).where(AuditRow.seq == other.seq).values(lane=2, lane_seq=10)
        )

    check = _tampered(three_lanes, moved)
    assert not check.ok and check.first_broken is not None
    assert check.first_broken < rows[10].seq

    check = _tampered(three_lanes, lambda s: s.add(forged(ROUNDS + 1, rows[-1])))
    assert (check.ok, check.first_broken) == (False, top + 1)
    assert "past lane 2's head: it was added afterwards" in check.problem


def test_entries_cut_off_a_lane_are_noticed_even_with_its_head_fixed(
    three_lanes: sessionmaker[Session],
) -> None:
    with three_lanes() as session:
        rows = _lane(session, 2)
        # Lane 1's 16th entry recorded lane 2 as it stood then (its 15 committed entries).
        [anchoring] = [r for r in _lane(session, 1) if r.lane_seq == 16]
    assert anchoring.anchors is not None
    assert anchoring.anchors["2"] == [15, rows[14].hash, rows[14].seq]

    def cut(rows: list[AuditRow]) -> Callable[[Session], Any]:
        return lambda s: s.execute(delete(AuditRow).where(AuditRow.seq.in_(r.seq for r in rows)))

    check = _tampered(three_lanes, cut(rows[16:]))  # past what any anchor recorded: the head
    assert (check.ok, check.first_broken) == (False, rows[-1].seq)
    assert (
        f"lane 2 ends at entry {rows[15].seq} but its head says entry {rows[-1].seq}: "
        "entries were removed from the end"
    ) in check.problem

    def and_head_fixed(session: Session) -> None:
        cut(rows[12:])(session)
        session.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == 2)
            .values(seq=rows[11].seq, entries=12, hash=rows[11].hash)
        )

    check = _tampered(three_lanes, and_head_fixed)
    assert (check.ok, check.first_broken) == (False, rows[14].seq)
    assert (
        f"entry {rows[14].seq} is missing: entry {anchoring.seq} recorded lane 2 up to it "
        "(15 entries), but the lane holds 12: entries were removed from the end"
    ) in check.problem

    def whole_lane(session: Session) -> None:
        session.execute(delete(AuditRow).where(AuditRow.lane == 3))
        session.execute(delete(AuditHeadRow).where(AuditHeadRow.id == 3))

    check = _tampered(three_lanes, whole_lane)
    assert not check.ok and "(15 entries), but the lane holds 0" in check.problem


def test_a_lane_rewritten_with_its_hashes_recomputed_is_noticed(
    three_lanes: sessionmaker[Session],
) -> None:
    with three_lanes() as session:
        rows = _lane(session, 2)

    def rewrite(session: Session) -> None:
        lane = _lane(session, 2)
        lane[4].actor = "someone else"
        _rehash(session, lane[4:], lane[3].hash)

    check = _tampered(three_lanes, rewrite)
    # The chain and its head agree again; what lane 1 anchored of lane 2 does not.
    assert (check.ok, check.first_broken) == (False, rows[14].seq)
    assert "lane 2's 15th: the lane was rewritten" in check.problem


# -- the single chain from before lanes ----------------------------------------------------


def _legacy_entries(count: int) -> tuple[list[dict[str, Any]], str]:
    """Entries as the single chain wrote them (hashed over their own fields), and the head."""
    rows, prev = [], "0" * 64
    for seq in range(1, count + 1):
        fields = {
            "seq": seq, "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "actor": "alice", "action": "approve", "resource": f"task t{seq}",
            "decision": "approved", "reason": "looks right", "task_id": f"t{seq}",
            "detail": {"n": seq},
        }  # fmt: skip
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()
        rows.append(fields | {"prev_hash": prev, "hash": digest})
        prev = digest
    return rows, prev


def test_the_single_chain_from_before_lanes_stays_verifiable_and_grows(
    database: str, tmp_path: Path
) -> None:
    engine = make_engine(_url(database, tmp_path))
    config = Config()
    config.set_main_option(
        "script_location", str(Path(shipyard.store.__file__).with_name("migrations"))
    )
    config.attributes["engine"] = engine
    try:
        command.upgrade(config, "0006_repo_changes")
        legacy, head = _legacy_entries(5)
        with engine.begin() as conn:  # the tables as revision 0006 has them
            log = table(
                "audit_log",
                *(column(name, JSON if name == "detail" else None) for name in legacy[0]),
            )
            conn.execute(insert(log), legacy)
            heads = table("audit_head", column("id"), column("seq"), column("hash"))
            conn.execute(update(heads).where(heads.c.id == 1).values(seq=5, hash=head))
        command.upgrade(config, "head")
        sessions = session_factory(engine)
        with sessions() as session:
            assert audit.verify(session) == audit.AuditCheck(ok=True, entries=5, lanes=1)
        with transaction(sessions) as session:
            new = [_append(session, "bob", n) for n in range(3)]
        assert [(r.seq, r.lane, r.lane_seq, r.prev_seq) for r in new] == [
            (6, 1, 6, 5), (7, 1, 7, 6), (8, 1, 8, 7),
        ]  # fmt: skip
        assert new[0].prev_hash == head
        with sessions() as session:
            assert audit.verify(session) == audit.AuditCheck(ok=True, entries=8, lanes=1)

        check = _tampered(
            sessions,
            lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 2).values(reason="no")),
        )
        assert (check.first_broken, check.entries) == (2, 1)
        assert "entry 2 was changed after it was written" in check.problem
        check = _tampered(sessions, lambda s: s.execute(delete(AuditRow).where(AuditRow.seq == 3)))
        assert (check.first_broken, check.problem) == (3, "entry 3 is missing (the next one is 4)")
        # A new entry whose lane fields are changed no longer matches its hash.
        check = _tampered(
            sessions,
            lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 7).values(prev_seq=4)),
        )
        assert check.first_broken == 7 and "does not chain" in check.problem
    finally:
        engine.dispose()
