"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from shipyard.config import Project
from shipyard.store import Base, include_object, make_engine, migrate, schema_status


def test_migrated_schema_matches_the_models(project: Project) -> None:
    engine = make_engine(project.database_url)
    try:
        migrate(engine)
        migrate(engine)  # a second start changes nothing
        current, head = schema_status(engine)
        assert current == head is not None
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": include_object})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
