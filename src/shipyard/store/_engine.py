"""Engine factory and schema migration for Shipyard's records.

SQLite (the embedded default) is opened in WAL mode with a busy timeout so a worker and the
CLI can write at once; PostgreSQL goes through psycopg 3. Both are migrated with Alembic.
A database already at the newest revision is found so without importing Alembic (a
command's start should not pay for it): the revision is read from the version table and
the newest one from the migration files' own ``revision`` lines.
"""

from __future__ import annotations

import fcntl
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.errors import StateError, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).with_name("migrations")
_VERSION_TABLE = "alembic_version"


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql://...``), tuned for Shipyard."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise StoreError(
        f"unsupported database URL scheme {parsed.drivername!r}",
        hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )


_WAL_FILES: set[str] = set()


def use_wal(path: Path) -> None:
    """Open every later SQLite connection to ``path`` in WAL mode with NORMAL sync.

    For databases whose engines Shipyard does not create (DBOS's checkpoints): in the default
    rollback-journal mode each commit costs several fsyncs, which made a checkpoint between
    two steps cost ~5 ms. WAL with NORMAL sync keeps every commit across a crash of the
    process; a power loss may drop the last few, and their steps then run again.
    """
    if not _WAL_FILES:
        event.listen(Engine, "connect", _wal_on_connect)
    _WAL_FILES.add(str(path.resolve()))


def _wal_on_connect(dbapi_conn: Any, _record: Any) -> None:
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    found = dbapi_conn.execute("PRAGMA database_list").fetchone()
    if found is not None and found[2] in _WAL_FILES:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


_MIGRATION_LOCK = 0x5348_4950_5941_5244 & 0x7FFF_FFFF_FFFF_FFFF
"""PostgreSQL advisory lock key that serializes migrations (b"SHIPYARD")."""


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held by one process at a time: the one that migrates; the others wait, then find the
    schema current.

    PostgreSQL takes a session advisory lock (every machine sees it); SQLite locks a file
    beside the database (every process on the machine that holds the file sees it).
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            # Try, rather than wait inside a statement: a waiting statement holds a snapshot,
            # and CREATE INDEX CONCURRENTLY elsewhere (DBOS's own migrations) waits for it.
            while not conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": _MIGRATION_LOCK}
            ).scalar():
                conn.commit()
                time.sleep(0.1)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> tuple[str | None, str | None] | None:
    """Bring the schema to the newest revision this code knows (safe to call every start).

    Several processes starting at once migrate once: the first takes the migration lock, the
    rest wait for it and find nothing to do. A database migrated by a newer Shipyard is
    refused rather than touched. Returns (from, to) revisions when this call migrated.
    """
    try:
        current, head = schema_status(engine)
        if current == head is not None:
            return None  # the usual start: nothing to do, nothing to lock
        from alembic import command

        config = _alembic_config(engine)
        with migration_lock(engine):
            refuse_newer_schema(engine)
            before, head = schema_status(engine)
            if before == head:
                return None
            command.upgrade(config, "head")
            return before, head
    except OperationalError as exc:
        raise StoreError(
            f"could not migrate the database at {engine.url.render_as_string()}: {exc.orig}",
            hint="check that the database is reachable and writable",
        ) from exc


def refuse_newer_schema(engine: Engine) -> None:
    """StateError when the database's schema revision is one this code does not know."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(engine))
    current = _current_revision(engine)
    if current is None:
        return
    try:
        script.get_revision(current)
    except Exception:  # alembic: "Can't locate revision"
        raise StateError(
            f"the database at {engine.url.render_as_string()} has schema revision {current!r}, "
            f"newer than this Shipyard knows (its newest is {script.get_current_head()!r})",
            hint="a newer Shipyard migrated it: upgrade Shipyard on this machine "
            "(workers refuse to run against a schema they do not know)",
        ) from None


def schema_status(engine: Engine) -> tuple[str | None, str | None]:
    """(current revision in the database, newest revision this code knows)."""
    head = _newest_revision()
    if head is None:  # a history the quick reading does not follow: Alembic's own answer
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    return _current_revision(engine), head


def _current_revision(engine: Engine) -> str | None:
    """The revision the database's version table holds (None before the first migration)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(_VERSION_TABLE):
            return None
        found = conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
        if len(found) <= 1:
            return found[0] if found else None
        from alembic.runtime.migration import MigrationContext  # says what is wrong with it

        return MigrationContext.configure(conn).get_current_revision()


_REVISION = re.compile(
    r"""^(down_revision|revision)\s*=\s*(?:None|"([^"]+)"|'([^']+)')\s*$""", re.M
)


@cache
def _newest_revision() -> str | None:
    """The newest revision among the migration files, from their ``revision`` and
    ``down_revision`` lines; None unless they form one line of history (a merge, a branch or a
    line written another way is left to Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        found = {m[0]: m[1] or m[2] for m in _REVISION.findall(path.read_text(encoding="utf-8"))}
        if "revision" not in found or "down_revision" not in found or not found["revision"]:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def has_prefix(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, taken literally: ``%`` and ``_`` are not wildcards,
    and case counts on SQLite as on PostgreSQL (SQLite's LIKE ignores it). The escaped LIKE
    lets an index narrow the rows; the comparison of the first characters decides."""
    return and_(
        column.startswith(prefix, autoescape=True),
        func.substr(column, 1, len(prefix)) == prefix,
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session in one transaction: committed on success, rolled back on any error."""
    with sessions() as session, session.begin():
        yield session


def insert_ignore(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    """INSERT that does nothing when the primary key or a unique key already exists.

    Content-addressed rows (the same artifact registered by two tasks at once) need this: a
    read-then-insert would race.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(model).values(**values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(model).values(**values).on_conflict_do_nothing())


def lock_rows(session: Session, *names: str) -> None:
    """Lock these named rows until the session's transaction ends (created on first use).

    Every worker that locks a name waits for the one holding it: on PostgreSQL a row lock,
    on SQLite the database's write lock (taken by the first write, before anything is read).
    Names are locked in sorted order, so two transactions never wait on each other.
    """
    from shipyard.store._schema import LockRow

    for name in sorted(set(names)):
        insert_ignore(session, LockRow, {"name": name, "version": 0})
        session.execute(
            update(LockRow).where(LockRow.name == name).values(version=LockRow.version + 1)
        )


def database_now(session: Session) -> datetime:
    """The database's clock on PostgreSQL (machines' clocks differ), this one's on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        found = session.scalar(select(func.now()))
        if isinstance(found, datetime):
            return found.astimezone(UTC)
    return datetime.now(UTC)
