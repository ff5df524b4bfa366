"""``shipyard init``: create shipyard.toml (if missing) and the state folder, migrate the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer
from dbos import DBOS

from shipyard.artifacts import SigningKey
from shipyard.cli._common import console, err_console, handle_errors, login_name
from shipyard.config import CONFIG_FILE, load_project
from shipyard.service import NO_TWO_PERSON_GUARANTEE
from shipyard.store import make_engine, migrate, schema_status

STARTER = """\
# Shipyard project. See the README for every key.
[project]
name = "{name}"

[generate]
tier = "template"   # the offline template tier; declare [tiers.NAME] for a model

# Each domain owns job kinds (folders with a job.toml) and has its own queue.
[domains.main]
jobs = []
concurrency = 4
worker_concurrency = 2

[targets.site]
kind = "static-site"
# A "production" target (the default environment) takes releases only by a rollout plan
# ([targets.site.rollout]: canary stages) or where a policy permits release_immediately.
environment = "staging"

[serve]
target = "site"

# People, their roles (Role::"NAME" in the policies) and the logins that are them. With a
# [people] table every command authenticates its person (the login, or SHIPYARD_TOKEN) and
# one person never counts as two approvers; without one, names are taken as given (--as,
# $SHIPYARD_USER, the login), so there is no two-person guarantee. To authenticate:
# [people.{person}]
# roles = ["approver", "operator"]
# os_users = [{login}]
"""


@handle_errors
def init(
    ctx: typer.Context,
    folder: Path = typer.Argument(Path("."), help="Project folder (created if missing)."),
) -> None:
    """Create shipyard.toml if there is none, then the state folder and the database schema."""
    root = Path(ctx.obj.get("project") or folder).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = root / CONFIG_FILE
    if not config.exists():
        login = login_name(authenticating=True)
        person = login if re.fullmatch(r"[A-Za-z0-9_-]+", login) else json.dumps(login)
        starter = STARTER.format(name=root.name, person=person, login=json.dumps(login))
        config.write_text(starter, encoding="utf-8")
        console.print(f"created {config}")
    project = load_project(root)
    project.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(project.database_url)
    try:
        migrate(engine)
        current, _head = schema_status(engine)
    finally:
        engine.dispose()
    DBOS.migrate(project.system_database_url)
    key = SigningKey.load_or_create(project.keys_dir)
    console.print(f"signing key {key.keyid} in {project.keys_dir}", highlight=False)
    where = (
        "SQLite " + project.database_url.removeprefix("sqlite:///")
        if project.is_sqlite
        else "PostgreSQL"
    )
    console.print(
        f"project [bold]{project.settings.project.name}[/] ready: {where}, schema {current}"
    )
    if not project.settings.people:
        err_console.print(f"warning: {NO_TWO_PERSON_GUARANTEE}", style="yellow", markup=False)
