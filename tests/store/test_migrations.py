"""The Alembic migrations build exactly the schema the models describe, on both databases,
plus the full-text search machinery the models cannot express."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, Table, delete, inspect, select, text, update

import shipyard.store
from shipyard.config import Project
from shipyard.memory import HashEmbedder, SemanticMemory
from shipyard.store import (
    AuditHeadRow,
    Base,
    MemoryRow,
    include_object,
    make_engine,
    migrate,
    schema_status,
    session_factory,
    transaction,
)


@pytest.fixture
def engine(project: Project) -> Iterator[Engine]:
    """The project's database, migrated to the newest revision."""
    engine = make_engine(project.database_url)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()


def _compare_server_default(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Alembic's own comparison, except for SQLite's empty-string default.

    SQLite reflects ``DEFAULT ''`` as ``('')``, and Alembic unquotes with ``(.+)``, which an
    empty string never matches, so it would report a difference where there is none.
    """
    if context.dialect.name != "sqlite" or inspected_default is None:
        return None
    unquoted = re.sub(r"^'(.*)'$", r"\1", re.sub(r"^\((.*)\)$", r"\1", inspected_default))
    return unquoted != rendered_metadata_default


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert migrate(engine) is None  # a second start changes nothing
    current, head = schema_status(engine)
    assert current == head is not None
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_object": include_object,
                "compare_type": True,
                "compare_server_default": _compare_server_default,
            },
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_every_database_starts_from_the_one_baseline() -> None:
    script = ScriptDirectory(str(Path(shipyard.store.__file__).with_name("migrations")))
    assert script.get_bases() == ["0001_baseline"]
    assert len(script.get_heads()) == 1


def test_the_newest_revision_read_from_the_files_is_alembics_head(tmp_path: Path) -> None:
    """A start finds its database current without importing Alembic; the newest revision it
    reads from the migration files must be the one Alembic would migrate to."""
    script = ScriptDirectory(str(Path(shipyard.store.__file__).with_name("migrations")))
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert schema_status(engine) == (None, script.get_current_head())
    finally:
        engine.dispose()


def test_the_audit_chain_starts_at_its_genesis_head(engine: Engine) -> None:
    with transaction(session_factory(engine)) as session:
        heads = session.execute(select(AuditHeadRow.id, AuditHeadRow.seq, AuditHeadRow.hash))
        assert heads.all() == [(1, 0, "0" * 64)]


def test_the_full_text_machinery_exists(engine: Engine) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            kind, sql = conn.execute(
                text("SELECT type, sql FROM sqlite_master WHERE name = 'memory_fts'")
            ).one()
            assert kind == "table"
            assert "USING fts5" in sql
            assert "content='memory_items'" in sql
            assert "porter" in sql
            triggers = conn.execute(
                text(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'memory_items' ORDER BY name"
                )
            ).scalars()
            assert list(triggers) == ["memory_fts_delete", "memory_fts_insert", "memory_fts_update"]
        else:
            generated = conn.execute(
                text(
                    "SELECT format_type(atttypid, atttypmod), attgenerated, "
                    "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                    "JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                    "WHERE a.attrelid = 'memory_items'::regclass AND a.attname = 'text_tsv'"
                )
            ).one()
            assert generated[:2] == ("tsvector", "s")  # generated, stored
            assert "to_tsvector('english'" in generated[2]
            indexes = {ix["name"]: ix for ix in inspect(conn).get_indexes("memory_items")}
            tsv = indexes["ix_memory_text_tsv"]
            assert tsv["column_names"] == ["text_tsv"]
            assert tsv["dialect_options"]["postgresql_using"] == "gin"


def test_memory_text_is_found_by_the_words_search(engine: Engine) -> None:
    """Inserted, changed and deleted text is what the memory's word search finds."""
    memory = SemanticMemory(HashEmbedder(), namespaces=["storefront", "global"])
    sessions = session_factory(engine)
    now = datetime.now(UTC)

    def item(body: str, namespace: str = "storefront") -> MemoryRow:
        return MemoryRow(
            namespace=namespace, kind="note", job_kind="", task_id="", text=body, created_at=now
        )

    with transaction(sessions) as session:
        kettles = item("Flash sale banner: ten percent off kettles until noon.")
        mugs = item("Blue enamel mugs ship in pairs.")
        elsewhere = item("Kettle prices end in .99.", namespace="global")
        session.add_all([kettles, mugs, elsewhere])
        session.flush()
        ids = kettles.id, mugs.id, elsewhere.id

    def words(query: str, namespaces: tuple[str, ...] = ("storefront",)) -> list[int]:
        with transaction(sessions) as session:
            return memory.words(session, query, namespaces, 10)

    assert words("kettle") == [ids[0]]  # stemmed: "kettles" matches
    assert words("enamel") == [ids[1]]
    assert sorted(words("kettle", ("storefront", "global"))) == sorted([ids[0], ids[2]])
    assert words("teapot") == []

    with transaction(sessions) as session:
        session.execute(
            update(MemoryRow).where(MemoryRow.id == ids[1]).values(text="Teapots ship alone.")
        )
    assert words("enamel") == []
    assert words("teapot") == [ids[1]]

    with transaction(sessions) as session:
        session.execute(delete(MemoryRow).where(MemoryRow.id == ids[0]))
    assert words("kettle") == []
    assert words("kettle", ("global",)) == [ids[2]]


def test_tasks_recorded_before_business_keys_keep_their_ids_as_theirs(project: Project) -> None:
    """0002 on a database with tasks: each task's business key is its id (so the effect keys
    of tasks under way stay ``TASK:POSITION:TOOL``), generation 1, and nothing that hangs
    off a task is lost on the way up or down (SQLite must not rebuild the table)."""
    engine = make_engine(project.database_url)
    config = Config()
    config.set_main_option(
        "script_location", str(Path(shipyard.store.__file__).with_name("migrations"))
    )
    config.attributes["engine"] = engine
    now = datetime.now(UTC)
    task = {
        "domain": "storefront", "job_kind": "landing-page", "input_key": "SKU-1", "inputs": {},
        "inputs_hash": "0" * 64, "source": "", "batch_id": "b-1", "state": "published",
        "submitted_by": "me", "submitted_at": now, "updated_at": now, "finished_at": now,
        "error": "", "attempts": 1, "artifact_id": "", "risk": "", "approvals_required": 0,
    }  # fmt: skip
    step = {
        "stage": "generate", "attempt": 1, "status": "done", "runs": 1, "started_at": now,
        "finished_at": now, "summary": "", "detail": {},
    }  # fmt: skip

    def steps() -> int:
        with engine.connect() as conn:
            return len(conn.execute(text("SELECT id FROM task_steps")).all())

    try:
        command.upgrade(config, "0001_baseline")
        with engine.begin() as conn:
            tables = MetaData()
            tasks = Table("tasks", tables, autoload_with=conn)
            task_steps = Table("task_steps", tables, autoload_with=conn)
            conn.execute(tasks.insert(), [{**task, "id": "t-1"}, {**task, "id": "t-2"}])
            conn.execute(task_steps.insert(), [{**step, "task_id": "t-1"}])

        command.upgrade(config, "head")
        with engine.connect() as conn:
            found = conn.execute(text("SELECT id, business_key, generation FROM tasks ORDER BY id"))
            assert found.all() == [("t-1", "t-1", 1), ("t-2", "t-2", 1)]
        assert steps() == 1

        command.downgrade(config, "0001_baseline")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("tasks")}
            assert "business_key" not in columns and "generation" not in columns
            assert "idempotency_keys" not in inspect(conn).get_table_names()
        assert steps() == 1
        command.upgrade(config, "head")
        assert steps() == 1
    finally:
        engine.dispose()
