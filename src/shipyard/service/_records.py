"""A project's records without its stages: what a command that only reads them opens.

``shipyard status``, ``list`` and ``show`` answer from the database alone; building the
whole :class:`~shipyard.orchestrator.Runtime` for them (job kinds, Cedar policies, providers,
the sandbox, the workflows and DBOS behind them) cost seconds. The queries take either.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shipyard.config import Project
from shipyard.store import make_engine, migrate, session_factory

__all__ = ["Records"]


@dataclass(kw_only=True)
class Records:
    """One project's database, opened for the queries that read it."""

    project: Project
    """The loaded project."""
    engine: Engine
    """Engine of Shipyard's records."""

    @classmethod
    def open(cls, project: Project) -> Records:
        """Open the project's database, migrated first as every start does (a database at
        the newest revision costs one query); a schema from a newer Shipyard is refused
        (StateError), not touched."""
        engine = make_engine(project.database_url)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(project=project, engine=engine)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    def close(self) -> None:
        self.engine.dispose()
