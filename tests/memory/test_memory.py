"""Memory on both databases: hybrid search, expiry, namespaces, embedders, exchange, recall."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from shipyard import service
from shipyard.config import Project, load_project
from shipyard.errors import ConfigError, InputError
from shipyard.jobs import BatchRow
from shipyard.memory import HashEmbedder, Item, SearchPolicy, VectorIndex, readable_namespaces
from shipyard.service import Runtime, approve, submit, task_story
from shipyard.store import MemoryRow, transaction
from support import PRODUCT, SETTLED, run_cli, wait_for_state, wait_until_finished

NOTES = [
    "Landing pages for coffee need the roast level in the headline.",
    "Product copy for kettles must state the capacity in litres.",
    "A rejected mug page used a stock photo without alt text.",
    "Enamel mugs are not dishwasher safe; never claim they are.",
    "Trail shoes copy: mention the grip and the weight per pair.",
]


@pytest.fixture
def rt(project: Project) -> Iterator[Runtime]:
    runtime = Runtime.open(project)
    yield runtime
    runtime.close()


def add(rt: Runtime, texts: list[str], namespace: str = "storefront", **kw: object) -> list[int]:
    with transaction(rt.sessions) as session:
        rows = rt.memory.add(
            session,
            [Item(text=t, namespace=namespace, **kw) for t in texts],  # type: ignore[arg-type]
        )
        return [r.id for r in rows]


def test_hybrid_search_finds_by_words_and_meaning_and_cuts_the_unrelated(rt: Runtime) -> None:
    ids = add(rt, NOTES)
    hits = service.search_memory(rt, "enamel mug dishwasher", namespaces=["storefront"], k=3)
    assert hits[0].id == ids[3]
    assert set(hits[0].found_by) == {"meaning", "words"}
    assert hits[0].similarity > 0.3
    # Nothing shares a word or a meaning with this: better no context than wrong context.
    assert (
        service.search_memory(rt, "quantum chromodynamics lattice", namespaces=["storefront"]) == []
    )


def test_search_filters_on_namespace_job_kind_and_tags(rt: Runtime) -> None:
    add(rt, ["Kettle copy states litres."], job_kind="product-copy", tags=("style",))
    add(rt, ["Kettle pages state litres too."], job_kind="landing-page")
    add(rt, ["Kettle litres in the global notes."], namespace="global")
    found = service.search_memory(rt, "kettle litres", namespaces=["storefront"], k=10)
    assert {h.job_kind for h in found} == {"product-copy", "landing-page"}
    only = service.search_memory(
        rt, "kettle litres", namespaces=["storefront"], job_kind="product-copy"
    )
    assert [h.text for h in only] == ["Kettle copy states litres."]
    tagged = service.search_memory(
        rt, "kettle litres", namespaces=["storefront", "global"], tags=["style"]
    )
    assert [h.tags for h in tagged] == [["style"]]
    with pytest.raises(InputError, match="unknown namespace"):
        service.search_memory(rt, "kettle", namespaces=["pricing"])


def test_expired_items_are_never_returned_and_gc_purges_them(rt: Runtime) -> None:
    add(rt, ["Short-lived: the summer sale banner text."], ttl_days=1)
    add(rt, ["Long-lived: the summer sale rules."])
    later = datetime.now(UTC) + timedelta(days=2)
    with rt.sessions() as session:
        hits = rt.memory.search(session, "summer sale", namespaces=["storefront"], now=later)
    assert [h.text for h in hits] == ["Long-lived: the summer sale rules."]
    with transaction(rt.sessions) as session:
        assert rt.memory.purge(session, now=later) == 1
        assert session.scalar(select(func.count()).select_from(MemoryRow)) == 1


def test_freshness_decays_and_the_token_cap_holds(rt: Runtime) -> None:
    old, new = add(rt, ["Mug copy: warm tone.", "Mug copy: warm tone, short."])
    with transaction(rt.sessions) as session:
        row = session.get(MemoryRow, old)
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(days=90)
    with rt.sessions() as session:
        hits = rt.memory.search(session, "mug copy warm tone", namespaces=["storefront"])
        assert hits[0].id == new
        tight = rt.memory.search(
            session,
            "mug copy warm tone",
            namespaces=["storefront"],
            policy=SearchPolicy(max_tokens=7),  # 28 characters: one item fits
        )
    assert len(tight) == 1


def test_bad_items_name_themselves_and_nothing_is_written(rt: Runtime) -> None:
    with pytest.raises(InputError, match="item 2: the text is empty"):
        add(rt, ["fine", "   "])
    with pytest.raises(InputError, match="item 1: the text is 20001 characters"):
        add(rt, ["x" * 20_001, "fine"])
    with pytest.raises(InputError, match="unknown namespace 'nowhere'"):
        add(rt, ["fine"], namespace="nowhere")
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(MemoryRow)) == 0


def test_another_embedders_vectors_are_refused_until_reindexed(project: Project) -> None:
    first = Runtime.open(project)
    add(first, NOTES)
    first.close()
    config = project.config_path
    config.write_text(
        config.read_text().replace('embedder = "hash"', 'embedder = "hash"\ndim = 256')
    )
    other = Runtime.open(load_project(project.root))
    try:
        with pytest.raises(ConfigError, match=r"another embedder .*5 by hash-384"):
            service.search_memory(other, "mug", namespaces=["storefront"])
        assert service.reindex_memory(other) == 5
        assert service.search_memory(other, "enamel mug dishwasher", namespaces=["storefront"])
    finally:
        other.close()


def test_export_then_import_round_trips_and_a_corrupt_line_writes_nothing(
    rt: Runtime, tmp_path: Path
) -> None:
    add(rt, NOTES[:3], tags=("style",))
    lines = list(service.export_memory(rt))
    first = json.loads(lines[0])
    assert (first["embedder"], first["dim"], first["tags"]) == ("hash-384", 384, ["style"])
    dump = tmp_path / "memory.jsonl"
    dump.write_text("\n".join(lines) + "\n")

    def no_embedding(texts: object) -> object:
        raise AssertionError("vectors of this embedder are reused, not made again")

    real = rt.memory.embedder.embed
    rt.memory.embedder.embed = no_embedding  # type: ignore[method-assign]
    try:
        assert service.import_memory(rt, dump) == 3
    finally:
        rt.memory.embedder.embed = real  # type: ignore[method-assign]
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(MemoryRow)) == 6

    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(InputError, match=r"broken.jsonl:2: not a memory item"):
        service.import_memory(rt, broken)
    bad_time = tmp_path / "bad-time.jsonl"
    bad_time.write_text(json.dumps(first | {"created_at": "last tuesday"}) + "\n")
    with pytest.raises(InputError, match=r"bad-time.jsonl:1: not a memory item"):
        service.import_memory(rt, bad_time)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps(first | {"embedder": "minilm-l6"}) + "\n")
    with pytest.raises(InputError, match="embedded by minilm-l6"):
        service.import_memory(rt, foreign)
    assert service.import_memory(rt, foreign, reembed=True) == 1
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(MemoryRow)) == 7


def test_the_hnsw_index_takes_over_past_its_threshold_and_finds_what_exact_search_finds() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(64, hnsw_threshold=1000)
    index.add(list(range(1, 1001)), vectors[:1000])
    index.search(vectors[0], 1)
    assert index.kind == "hnsw"
    index.add(list(range(1001, 3001)), vectors[1000:])
    index.add(list(range(1, 11)), vectors[:10])  # an overlapping sync adds nothing twice
    assert len(index) == 3000
    found = 0
    for row in rng.choice(3000, size=50, replace=False):
        exact = {i for i, _ in index.exact(vectors[row], 10)}
        found += len(exact & {i for i, _ in index.search(vectors[row], 10)})
    assert found / 500 >= 0.95


def test_the_hash_embedder_is_deterministic_and_lexical() -> None:
    embedder = HashEmbedder()
    a, b, c = embedder.embed(["blue enamel mug", "a blue enamel mug", "steel kettle"])
    assert np.allclose(embedder.embed(["blue enamel mug"])[0], a)
    assert float(a @ b) > 0.6 > float(a @ c)
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5


def test_a_domain_recalls_only_the_namespaces_it_may_read(project: Project) -> None:
    config = project.config_path
    text = config.read_text().replace(
        "[domains.storefront]", "[domains.pricing]\njobs = []\n\n[domains.storefront]", 1
    )
    config.write_text(text)
    rt = Runtime.open(load_project(project.root))
    try:
        add(rt, ["Kettle prices end in .99 in the pricing domain."], namespace="pricing")
        add(rt, ["Kettle copy: mention the litres."])
        assert readable_namespaces(rt.project.settings, "storefront") == ["storefront", "global"]
        hits = service.search_memory(
            rt, "kettle", namespaces=readable_namespaces(rt.project.settings, "storefront")
        )
        assert [h.namespace for h in hits] == ["storefront"]
    finally:
        rt.close()
    config.write_text(
        text.replace(
            "worker_concurrency = 2\n", 'worker_concurrency = 2\nmemory_reads = ["pricing"]\n', 1
        )
    )
    rt = Runtime.open(load_project(project.root))
    try:
        assert readable_namespaces(rt.project.settings, "storefront") == [
            "storefront",
            "global",
            "pricing",
        ]
    finally:
        rt.close()


def test_product_copy_recalls_earlier_approved_copy_and_show_says_so(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    kind = rt.jobs.get("product-copy")
    first = submit(rt, kind, [BatchRow(where="t", data=PRODUCT)], submitted_by="me").submitted[0]
    assert wait_for_state(rt, first, SETTLED) == "waiting_approval"
    approve(rt, first, actor="alice")
    assert wait_until_finished(rt, first) == "published"

    similar = {**PRODUCT, "sku": "SKU-102", "name": "Trail Mug Large", "price": "21.00"}
    second = submit(rt, kind, [BatchRow(where="t", data=similar)], submitted_by="me").submitted[0]
    assert wait_for_state(rt, second, SETTLED) == "waiting_approval"
    story = task_story(rt, second)
    [attempt] = story.attempts
    recalled = [story.memories[i] for i in attempt.recalled if i in story.memories]
    published = [m for m in recalled if m.task_id == first and m.kind == "published"]
    assert published, attempt.recalled
    assert "Trail Mug" in published[0].text and "Output:" in published[0].text
    assert published[0].text.split("Output:")[1].strip()  # the approved copy itself
    assert "## What happened before" in attempt.prompt and "Trail Mug" in attempt.prompt

    shown = run_cli(project.root, "show", second)
    assert "recalled" in shown.stdout and "published: product-copy for SKU-101" in shown.stdout
    found = run_cli(
        project.root,
        "memory",
        "search",
        "Northbound Trail Mug, blue enamel, kitchen: product copy",
        "--json",
    )
    assert any(hit["task_id"] == first for hit in json.loads(found.stdout))
