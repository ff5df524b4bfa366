"""Two workers' memories over one database: each in-process vector index keeps up with the
other worker's writes, and the database (not the index) decides what is still there.

Each worker here is a Runtime of its own (its own engine, sessions and SemanticMemory), as
two worker processes sharing a database would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, update

from shipyard.config import Project
from shipyard.memory import Hit, Item
from shipyard.service import Runtime
from shipyard.store import MemoryRow, transaction

NS = "storefront"

NOTES = [
    "Landing pages for coffee need the roast level in the headline.",
    "Product copy for kettles must state the capacity in litres.",
    "Trail shoes copy: mention the grip and the weight per pair.",
]


@pytest.fixture
def workers(project: Project) -> Iterator[tuple[Runtime, Runtime]]:
    a, b = Runtime.open(project), Runtime.open(project)
    assert a.engine is not b.engine and a.memory is not b.memory
    yield a, b
    a.close()
    b.close()


def add(rt: Runtime, text: str, **kw: object) -> int:
    with transaction(rt.sessions) as session:
        [row] = rt.memory.add(session, [Item(text=text, namespace=NS, **kw)])  # type: ignore[arg-type]
        return row.id


def search(rt: Runtime, query: str, k: int = 5) -> list[Hit]:
    with rt.sessions() as session:
        return rt.memory.search(session, query, namespaces=[NS], k=k)


def in_index(rt: Runtime, query: str) -> list[int]:
    """Ids the worker's in-process index holds nearest the query (no database re-check)."""
    with rt.sessions() as session:
        return rt.memory.nearest(session, query, NS, 20)


def test_an_item_another_worker_adds_is_found_by_meaning_on_the_next_search(
    workers: tuple[Runtime, Runtime],
) -> None:
    a, b = workers
    for note in NOTES:
        add(a, note)
    assert search(a, "enamel mug dishwasher safe") == []  # A's index is built, and knows none

    mug = add(b, "Enamel mugs are not dishwasher safe; never claim they are.")
    hits = search(a, "enamel mug dishwasher safe")
    assert [h.id for h in hits][:1] == [mug]
    assert "meaning" in hits[0].found_by  # from A's own index, synced from the database
    assert mug in in_index(a, "enamel mug dishwasher safe")

    # And the other way: what A adds, B (whose index is built by now too) finds.
    assert search(b, "kettle capacity litres")
    kettle = add(a, "Electric kettle pages: capacity in litres and the boil time.")
    assert kettle in [
        h.id for h in search(b, "electric kettle boil time") if "meaning" in h.found_by
    ]


def test_an_item_deleted_or_expired_through_another_worker_is_not_returned(
    workers: tuple[Runtime, Runtime],
) -> None:
    a, b = workers
    gone = add(b, "Summer sale banner: twenty percent off enamel mugs.")
    lapsed = add(b, "Summer sale rules: enamel mugs excluded from coupons.")
    kept = add(b, "Summer sale footer: enamel mugs ship free.")
    query = "summer sale enamel mugs"
    assert {h.id for h in search(a, query)} == {gone, lapsed, kept}

    with transaction(b.sessions) as session:
        session.execute(delete(MemoryRow).where(MemoryRow.id == gone))
        session.execute(
            update(MemoryRow)
            .where(MemoryRow.id == lapsed)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )

    assert {gone, lapsed, kept} <= set(in_index(a, query))  # A's index still holds them ...
    hits = search(a, query)
    assert [h.id for h in hits] == [kept]  # ... but the database decides what is returned
    assert "meaning" in hits[0].found_by


def test_an_item_expiring_by_its_time_to_live_drops_out_of_the_other_workers_search(
    workers: tuple[Runtime, Runtime],
) -> None:
    a, b = workers
    short = add(b, "Flash sale: camp stoves at half price today.", ttl_days=1)
    with a.sessions() as session:
        now = [h.id for h in a.memory.search(session, "camp stoves sale", namespaces=[NS])]
        later = a.memory.search(
            session, "camp stoves sale", namespaces=[NS], now=datetime.now(UTC) + timedelta(days=2)
        )
    assert now == [short] and later == []


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_an_item_committed_after_a_later_id_is_still_found_by_meaning(
    workers: tuple[Runtime, Runtime],
) -> None:
    """On PostgreSQL ids are handed out at insert, so a lower id can commit after a higher
    one another worker committed (and a third already synced past)."""
    a, b = workers
    query = "cast iron skillet seasoning"
    with b.sessions() as slow:
        slow.begin()
        [late] = b.memory.add(
            slow, [Item(text="Cast iron skillet copy: explain the seasoning.", namespace=NS)]
        )
        quick = add(b, "Tent pages: state the packed weight.")
        assert quick > late.id
        assert [h.id for h in search(a, query)] == []  # A has synced past the late id
        assert quick in in_index(a, "tent packed weight")
        slow.commit()

    hits = search(a, query)
    assert [h.id for h in hits] == [late.id]  # the words half finds it either way ...
    assert "meaning" in hits[0].found_by  # ... and A's index must hold it too
