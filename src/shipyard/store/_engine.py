"""Engine factory and schema migration for Shipyard's records.

SQLite (the embedded default) is opened in WAL mode with a busy timeout so a worker and the
CLI can write at once; PostgreSQL goes through psycopg 3. Both are migrated with Alembic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.errors import StoreError

_MIGRATIONS = Path(__file__).with_name("migrations")


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


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision this code knows (safe to call every start)."""
    try:
        command.upgrade(_alembic_config(engine), "head")
    except OperationalError as exc:
        raise StoreError(
            f"could not migrate the database at {engine.url.render_as_string()}: {exc.orig}",
            hint="check that the database is reachable and writable",
        ) from exc


def schema_status(engine: Engine) -> tuple[str | None, str | None]:
    """(current revision in the database, newest revision this code knows)."""
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


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
