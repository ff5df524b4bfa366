"""Benchmark Shipyard's semantic memory at 100,000 items, on SQLite and on PostgreSQL.

For each database one run measures, on a fresh project in a temporary folder (one domain,
``bench``, and the default ``[memory]`` settings: the ``hash`` embedder, HNSW from 20,000
vectors per namespace on):

- **insert throughput**: items per second through ``rt.memory.add`` in batches of 1,000 per
  transaction (``shipyard.store.transaction``), embedding included; the embedder's share is
  timed apart;
- **index load + build**: the first search of the namespace loads every vector from the
  database and builds the in-process index (a usearch HNSW graph at this size), once per
  process; timed apart, on its own;
- **hybrid query latency**: ``rt.memory.search(session, query, namespaces=["bench"], k=10)``,
  one fresh session per query, after the index is warm; p50 / p95 (nearest rank);
- **where a query's time goes**: the same queries again with the stages of ``search`` timed
  (the query's embedding, the other-embedder check, the index sync, the vector search, the
  words half, the row fetch, the rest);
- **recall@10 of the vector half**: ``rt.memory.nearest`` (the index) against
  ``rt.memory.exact_neighbours`` (brute force in numpy over the same vectors), per query,
  averaged.

**The corpus** is generated, always the same for a given ``--seed``: short product and
operations notes of 40-80 words, each with a theme (two products, attributes, colours, a
category, verbs, operations words, a supplier, a SKU) that most of its words come from, the
rest drawn from the whole vocabulary. **The queries** take three or four theme words of a
random note (so they have true neighbours) and add a noise word from the vocabulary, and
half the time a word the corpus never uses. The words and sentence templates are in
``benchmarks/fixtures/memory_recall/vocabulary.toml``.

Usage::

    .venv/bin/python benchmarks/memory_recall.py [--items N] [--queries Q] [--batch B]
        [--postgres URL | --skip-postgres] [--seed S] [--analyze] [--keep]

``--analyze`` runs ``ANALYZE`` after the inserts (Shipyard never does; a PostgreSQL with
autovacuum on gets there by itself, SQLite never does); the table says whether the planner had
statistics either way.

PostgreSQL: a fresh database ``shipyard_bench_<random>`` is created through the server's
``postgres`` database and dropped at the end (``--postgres``, default
``postgresql://postgres@127.0.0.1:5432/test``; only its server and credentials are used).
The script exits 0 whenever it completes, targets met or not; 2 when a database cannot be
reached or the project is refused.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from _harness import (
    fixture,
    fresh_postgres,
    load_average,
    machine_line,
    percentile,
    postgres_admin_url,
    side_by_side,
    target,
)
from sqlalchemy import text
from sqlalchemy.orm import Session

from shipyard.config import load_project
from shipyard.errors import ShipyardError
from shipyard.memory import Embedder, Item, SemanticMemory, VectorIndex
from shipyard.service import Runtime
from shipyard.store import transaction

NAMESPACE = "bench"
K = 10
TARGET_P50_MS = 20.0
TARGET_RECALL = 0.95
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
WARMUP_QUERIES = 5

SHIPYARD_TOML = f"""\
# Written by benchmarks/memory_recall.py for one run.
[project]
name = "memory-recall-bench"

[domains.{NAMESPACE}]
jobs = []
"""

# --- the corpus ----------------------------------------------------------------------------


VOCABULARY = tomllib.loads(fixture("memory_recall", "vocabulary.toml"))
"""The word lists (each one string, split on whitespace; their order makes the corpus) and
the sentence templates."""
PRODUCTS: list[str] = VOCABULARY["products"].split()
CATEGORIES: list[str] = VOCABULARY["categories"].split()
ATTRIBUTES: list[str] = VOCABULARY["attributes"].split()
COLOURS: list[str] = VOCABULARY["colours"].split()
VERBS: list[str] = VOCABULARY["verbs"].split()
OPERATIONS: list[str] = VOCABULARY["operations"].split()
DAYS: list[str] = VOCABULARY["days"].split()
SYLLABLES: list[str] = VOCABULARY["syllables"].split()
OUTSIDE: list[str] = VOCABULARY["outside"].split()
"""Words the corpus never uses: query noise that only the query has."""
TEMPLATES: tuple[str, ...] = tuple(VOCABULARY["templates"])


@dataclass(frozen=True)
class Theme:
    product: tuple[str, ...]
    attribute: tuple[str, ...]
    colour: tuple[str, ...]
    category: tuple[str, ...]
    verb: tuple[str, ...]
    operation: tuple[str, ...]
    supplier: tuple[str, ...]
    sku: tuple[str, ...]


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    themes: list[Theme]
    vocabulary: list[str]
    queries: list[str]


def generate(items: int, queries: int, seed: int) -> Corpus:
    """``items`` notes and ``queries`` queries, the same for the same arguments."""
    rng = random.Random(seed)
    suppliers = sorted({a + b for a in SYLLABLES for b in SYLLABLES if a != b})
    suppliers = rng.sample(suppliers, 200)
    pools: dict[str, list[str]] = {
        "product": PRODUCTS,
        "attribute": ATTRIBUTES,
        "colour": COLOURS,
        "category": CATEGORIES,
        "verb": VERBS,
        "operation": OPERATIONS,
        "supplier": suppliers,
    }
    sizes = {"product": 2, "attribute": 4, "colour": 2, "category": 1, "verb": 3, "operation": 3}
    texts: list[str] = []
    themes: list[Theme] = []
    for _ in range(items):
        chosen = {name: tuple(rng.sample(pools[name], n)) for name, n in sizes.items()}
        theme = Theme(
            **chosen,
            supplier=(rng.choice(suppliers),),
            sku=(str(rng.randint(10_000, 99_999)),),
        )

        def pick(slot: str, theme: Theme = theme) -> str:
            if slot == "sku":
                return theme.sku[0]
            if slot == "qty":
                return str(rng.randint(2, 500))
            if slot == "day":
                return rng.choice(DAYS)
            if rng.random() < 0.8:
                return str(rng.choice(getattr(theme, slot)))
            return rng.choice(pools[slot])

        length = rng.randint(40, 80)
        words: list[str] = []
        while len(words) < length:
            template = rng.choice(TEMPLATES)
            # Fill the slots left to right, one draw each (a slot named twice gets two).
            sentence = template
            while "{" in sentence:
                start = sentence.index("{")
                slot = sentence[start + 1 : sentence.index("}", start)]
                sentence = sentence.replace("{" + slot + "}", pick(slot), 1)
            words += sentence.split()
        texts.append(" ".join(words[:length]).rstrip(".,;") + ".")
        themes.append(theme)
    vocabulary = sorted({w for pool in pools.values() for w in pool})
    query_texts = []
    for _ in range(queries):
        theme = themes[rng.randrange(items)]
        words = [rng.choice(theme.product), rng.choice(theme.attribute)]
        extra = [*theme.colour, *theme.verb, *theme.operation, *theme.supplier]
        words += rng.sample(extra, rng.randint(1, 2))
        words.append(rng.choice(vocabulary))
        if rng.random() < 0.5:
            words.append(rng.choice(OUTSIDE))
        rng.shuffle(words)
        query_texts.append(" ".join(words))
    return Corpus(texts=texts, themes=themes, vocabulary=vocabulary, queries=query_texts)


# --- timing --------------------------------------------------------------------------------


class TimedEmbedder:
    """The project's embedder, with the seconds it spends counted."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.seconds = 0.0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started


STAGES = (
    ("embed", "embed the query"),
    ("check", "other-embedder check (SQL)"),
    ("sync", "index sync (SQL, new rows)"),
    ("vector", "vector search (index)"),
    ("words", "words half (SQL)"),
    ("fetch", "row fetch + ORM (SQL)"),
    ("rest", "rest (fusion, scoring, session)"),
)


class _Fetched:
    """What ``session.scalars`` returns, already fetched, so the fetch is timed whole."""

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def all(self) -> list[Any]:
        return self._rows


class Stages:
    """Times the stages of ``SemanticMemory.search`` by wrapping, on this instance only, the
    methods it calls (private ones included: this is a benchmark looking inside)."""

    def __init__(self, memory: SemanticMemory, embedder: TimedEmbedder) -> None:
        self.memory = memory
        self.embedder = embedder
        self.current: dict[str, float] = {}
        self.index: VectorIndex | None = None

    def _add(self, stage: str, seconds: float) -> None:
        self.current[stage] = self.current.get(stage, 0.0) + seconds

    def _timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(stage, time.perf_counter() - started)

        return wrapper

    @contextmanager
    def installed(self) -> Iterator[None]:
        memory = self.memory
        plain_index = memory._index

        def index(session: Session, namespace: str) -> VectorIndex:
            started = time.perf_counter()
            found = plain_index(session, namespace)
            self._add("sync", time.perf_counter() - started)
            if "search" not in vars(found):
                vars(found)["search"] = self._timed("vector", found.search)
            self.index = found
            return found

        patched = {
            "_index": index,
            "_refuse_other_embedders": self._timed("check", memory._refuse_other_embedders),
            "words": self._timed("words", memory.words),
        }
        vars(memory).update(patched)
        try:
            yield
        finally:
            for name in patched:
                vars(memory).pop(name, None)
            if self.index is not None:
                vars(self.index).pop("search", None)

    def search(self, session: Session, query: str) -> tuple[dict[str, float], int]:
        """One search, its stages in seconds (``total`` too) and the number of hits."""
        plain_scalars = session.scalars

        def scalars(*args: Any, **kwargs: Any) -> _Fetched:
            return _Fetched(list(plain_scalars(*args, **kwargs).all()))

        vars(session)["scalars"] = self._timed("fetch", scalars)
        self.current = {}
        embedded = self.embedder.seconds
        started = time.perf_counter()
        hits = self.memory.search(session, query, namespaces=[NAMESPACE], k=K)
        total = time.perf_counter() - started
        vars(session).pop("scalars")
        stages = dict(self.current)
        stages["embed"] = self.embedder.seconds - embedded
        stages["rest"] = total - sum(stages.values())
        stages["total"] = total
        return stages, len(hits)


# --- one database --------------------------------------------------------------------------


@dataclass
class Result:
    database: str
    version: str = ""
    items: int = 0
    insert_seconds: float = 0.0
    insert_embed_seconds: float = 0.0
    load_seconds: float = 0.0
    build_seconds: float = 0.0
    first_search_seconds: float = 0.0
    index_kind: str = ""
    statistics: str = ""
    """Whether the planner had statistics when the queries ran."""
    index_size: int = 0
    latencies: list[float] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    exact_similarities: list[list[float]] = field(default_factory=list)
    """Per query, the exact top ``K + 1`` cosine similarities."""

    def similarity(self, rank: int) -> float:
        """The median over queries of the exact ``rank``-th neighbour's similarity."""
        return float(np.median([s[rank - 1] for s in self.exact_similarities if len(s) >= rank]))

    @property
    def p50_ms(self) -> float:
        return 1000 * percentile(self.latencies, 50)

    @property
    def p95_ms(self) -> float:
        return 1000 * percentile(self.latencies, 95)

    @property
    def recall(self) -> float:
        return float(np.mean(self.recalls))


@contextmanager
def environment(url: str | None) -> Iterator[None]:
    """SHIPYARD_DATABASE_URL for load_project: ``url``, or unset for the project's SQLite."""
    before = os.environ.pop("SHIPYARD_DATABASE_URL", None)
    if url is not None:
        os.environ["SHIPYARD_DATABASE_URL"] = url
    try:
        yield
    finally:
        os.environ.pop("SHIPYARD_DATABASE_URL", None)
        if before is not None:
            os.environ["SHIPYARD_DATABASE_URL"] = before


def planner_statistics(session: Session) -> str:
    """Whether the planner has statistics on memory_items (Shipyard never runs ANALYZE)."""
    if session.get_bind().dialect.name == "sqlite":
        found = session.scalar(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        )
        return "yes" if found else "none (no ANALYZE)"
    analysed = session.execute(
        text(
            "SELECT coalesce(last_analyze, last_autoanalyze) FROM pg_stat_user_tables "
            "WHERE relname = 'memory_items'"
        )
    ).scalar()
    autovacuum = session.scalar(text("SHOW autovacuum"))
    return f"{'yes' if analysed else 'none'} (autovacuum {autovacuum})"


def run_database(
    name: str,
    root: Path,
    url: str | None,
    corpus: Corpus,
    *,
    batch: int,
    analyze: bool,
    say: Callable[[str], None],
) -> Result:
    root.mkdir(parents=True)
    (root / "shipyard.toml").write_text(SHIPYARD_TOML, encoding="utf-8")
    with environment(url):
        project = load_project(root)
    rt = Runtime.open(project)
    result = Result(database=name)
    try:
        memory = rt.memory
        embedder = TimedEmbedder(memory.embedder)
        memory.embedder = embedder
        with rt.sessions() as session:
            if project.is_sqlite:
                result.version = f"SQLite {sqlite3.sqlite_version}"
            else:
                version = str(session.scalar(text("SHOW server_version")))
                result.version = f"PostgreSQL {version.split()[0]}"

        say(f"{name}: inserting {len(corpus.texts):,} items in batches of {batch}")
        started = time.perf_counter()
        for at in range(0, len(corpus.texts), batch):
            items = [Item(text=t, namespace=NAMESPACE) for t in corpus.texts[at : at + batch]]
            with transaction(rt.sessions) as session:
                memory.add(session, items)
        result.insert_seconds = time.perf_counter() - started
        result.insert_embed_seconds = embedder.seconds
        result.items = len(corpus.texts)

        if analyze:
            say(f"{name}: ANALYZE")
            with transaction(rt.sessions) as session:
                session.execute(text("ANALYZE"))
        with rt.sessions() as session:
            result.statistics = planner_statistics(session)

        say(f"{name}: first search (index load + build)")
        stages = Stages(memory, embedder)
        with stages.installed(), rt.sessions() as session:
            first, _ = stages.search(session, corpus.queries[0])
        result.first_search_seconds = first["total"]
        result.load_seconds = first["sync"]
        result.build_seconds = first["vector"]
        if stages.index is None:
            raise SystemExit("the first search did not reach the vector index")
        result.index_kind, result.index_size = stages.index.kind, len(stages.index)

        say(f"{name}: {len(corpus.queries)} hybrid queries (+{WARMUP_QUERIES} to warm up)")
        for query in corpus.queries[:WARMUP_QUERIES]:
            with rt.sessions() as session:
                memory.search(session, query, namespaces=[NAMESPACE], k=K)
        for query in corpus.queries:
            with rt.sessions() as session:
                started = time.perf_counter()
                hits = memory.search(session, query, namespaces=[NAMESPACE], k=K)
                result.latencies.append(time.perf_counter() - started)
            result.hits.append(len(hits))

        say(f"{name}: the same queries, stages timed")
        with stages.installed():
            for query in corpus.queries:
                with rt.sessions() as session:
                    timed, _ = stages.search(session, query)
                result.stages.append(timed)

        say(f"{name}: recall@{K}, index against brute force")
        with rt.sessions() as session:
            for query in corpus.queries:
                approx = memory.nearest(session, query, NAMESPACE, K)
                exact = memory.exact_neighbours(session, query, NAMESPACE, K)
                result.recalls.append(len(set(approx) & set(exact)) / max(1, len(exact)))
                # How far apart the true neighbours are: near-ties make recall@10 hard.
                vector = memory.embedder.embed([query])[0]
                similarities = [similarity for _, similarity in stages.index.exact(vector, K + 1)]
                result.exact_similarities.append(similarities)
    finally:
        rt.close()
    return result


# --- PostgreSQL ----------------------------------------------------------------------------


def postgres_version(base: str) -> str:
    """The server's version; psycopg.OperationalError when it cannot be reached."""
    with psycopg.connect(postgres_admin_url(base), autocommit=True, connect_timeout=10) as conn:
        return str(conn.info.server_version)


# --- reporting -----------------------------------------------------------------------------


def print_table(results: Sequence[Result]) -> None:
    width = 22
    rows: list[tuple[str, list[str]]] = [
        ("database", [r.version for r in results]),
        ("items", [f"{r.items:,}" for r in results]),
        ("insert, items/s", [f"{r.items / r.insert_seconds:,.0f}" for r in results]),
        (
            "  of which embedding",
            [f"{r.insert_embed_seconds:.1f} of {r.insert_seconds:.1f} s" for r in results],
        ),
        (
            "  items/s, SQL only",
            [f"{r.items / (r.insert_seconds - r.insert_embed_seconds):,.0f}" for r in results],
        ),
        ("planner statistics", [r.statistics for r in results]),
        ("index kind (vectors)", [f"{r.index_kind} ({r.index_size:,})" for r in results]),
        ("index load from DB, s", [f"{r.load_seconds:.2f}" for r in results]),
        ("index build, s", [f"{r.build_seconds:.2f}" for r in results]),
        ("first search, s", [f"{r.first_search_seconds:.2f}" for r in results]),
        ("hybrid p50, ms", [f"{r.p50_ms:.1f}" for r in results]),
        ("hybrid p95, ms", [f"{r.p95_ms:.1f}" for r in results]),
        ("hits per query, mean", [f"{np.mean(r.hits):.1f}" for r in results]),
        (f"recall@{K} (vector half)", [f"{r.recall:.4f}" for r in results]),
        (f"  worst query's recall@{K}", [f"{min(r.recalls):.2f}" for r in results]),
        (
            f"exact sim. 1st/{K}th/{K + 1}th",
            [
                f"{r.similarity(1):.3f}/{r.similarity(K):.3f}/{r.similarity(K + 1):.3f}"
                for r in results
            ],
        ),
        (
            f"p50 <= {TARGET_P50_MS:g} ms",
            [target(r.p50_ms <= TARGET_P50_MS) for r in results],
        ),
        (
            f"recall@{K} >= {TARGET_RECALL}",
            [target(r.recall >= TARGET_RECALL) for r in results],
        ),
    ]
    print()
    for line in side_by_side([r.database for r in results], rows, label=28, width=width):
        print(line)


def print_stages(results: Sequence[Result]) -> None:
    rows = [
        (
            name,
            [
                f"{1000 * float(np.median([s.get(key, 0.0) for s in r.stages])):.2f}"
                for r in results
            ],
        )
        for key, name in (*STAGES, ("total", "total (stages timed)"))
    ]
    print(f"\nwhere a hybrid query's time goes: median ms per stage ({len(results[0].stages)} q)")
    for line in side_by_side([r.database for r in results], rows, label=34, width=22):
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="corpus size (100,000)")
    parser.add_argument("--queries", type=int, default=200, help="queries timed (200)")
    parser.add_argument("--batch", type=int, default=1000, help="items per transaction (1000)")
    parser.add_argument("--seed", type=int, default=0, help="the corpus's seed (0)")
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, metavar="URL", help=f"({DEFAULT_POSTGRES})"
    )
    parser.add_argument("--skip-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--analyze", action="store_true", help="run ANALYZE after the inserts (steady state)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the SQLite project folder")
    args = parser.parse_args(argv)
    if args.items < K or args.queries < 1 or args.batch < 1:
        parser.error(f"--items takes at least {K}; --queries and --batch at least 1")

    began = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {message}", flush=True)

    print(f"machine: {machine_line('usearch', 'numpy')}")
    started = time.perf_counter()
    corpus = generate(args.items, args.queries, args.seed)
    words = sum(len(t.split()) for t in corpus.texts)
    print(
        f"corpus: {len(corpus.texts):,} notes, {words / len(corpus.texts):.0f} words each on "
        f"average, vocabulary {len(corpus.vocabulary)} words + numbers (seed {args.seed}, "
        f"made in {time.perf_counter() - started:.1f} s)"
    )
    print(f"query examples: {' | '.join(corpus.queries[:3])}")

    if not args.skip_postgres:
        try:
            postgres_version(args.postgres)
        except psycopg.OperationalError as exc:
            print(f"error: PostgreSQL at {args.postgres}: {str(exc).strip()}")
            print("hint: start it, pass --postgres URL, or --skip-postgres")
            return 2

    results: list[Result] = []
    root = Path(tempfile.mkdtemp(prefix="shipyard-memory-bench-"))
    try:
        options: dict[str, Any] = {"batch": args.batch, "analyze": args.analyze, "say": say}
        results.append(run_database("SQLite", root / "sqlite", None, corpus, **options))
        if not args.skip_postgres:
            with fresh_postgres(args.postgres) as url:
                results.append(run_database("PostgreSQL", root / "pg", url, corpus, **options))
    except ShipyardError as exc:
        print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""))
        return 2
    finally:
        if args.keep:
            print(f"project folder kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    say("done")
    print_table(results)
    print_stages(results)
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
