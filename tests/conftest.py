"""Shared fixtures: example projects, both databases, and an in-process worker.

DBOS keeps process-wide state, so the ``worker`` fixture launches it for one test and destroys
it afterwards; workflows stay registered (they are module-level decorators).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shipyard.config import Project, load_project
from shipyard.generate import Provider
from shipyard.service import Runtime, launch, shutdown
from support import PG_ENV, copy_example


def _fresh_postgres_database(base_url: str) -> tuple[str, Callable[[], None]]:
    name = f"shipyard_test_{secrets.token_hex(4)}"
    admin = create_engine(
        make_url(base_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs the test on SQLite and on PostgreSQL (a fresh database each time)."""
    if request.param == "sqlite":
        monkeypatch.delenv("SHIPYARD_DATABASE_URL", raising=False)
        yield "sqlite"
        return
    yield from _postgres(monkeypatch)


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database, for tests that only make sense there (scale-out)."""
    yield from _postgres(monkeypatch)


def _postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1/test)")
    url, drop = _fresh_postgres_database(base)
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def project(tmp_path: Path, database: str) -> Project:
    """The e-commerce example on the database under test, with the tests' people in it."""
    root = copy_example(tmp_path / "shop")
    config = root / "shipyard.toml"
    roles = '["merchandiser", "approver", "developer", "operator", "admin"]'
    config.write_text(
        config.read_text()
        + "".join(f"\n[people.{name}]\nroles = {roles}\n" for name in TEST_PEOPLE)
    )
    return load_project(root)


TEST_PEOPLE = ("me", "a", "alice", "bob", "carol", "ops")
"""People the tests act as, each holding every role of the example's policies."""


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Runtime]]:
    """Launch an in-process worker for a project (optionally with a test provider)."""
    launched: list[Runtime] = []

    def start(project: Project, provider: Provider | None = None) -> Runtime:
        if launched:
            shutdown()
            launched.pop().close()
        rt = Runtime.open(project, provider=provider)
        launch(rt)
        launched.append(rt)
        return rt

    yield start
    if launched:
        shutdown()
        launched.pop().close()
