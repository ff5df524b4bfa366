"""``shipyard tokens``: tokens for the REST API and the console."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli._common import (
    as_option,
    console,
    err_console,
    handle_errors,
    open_runtime,
    timestamp,
    who,
)
from shipyard.service import ROLES, create_token, list_tokens, revoke_token

tokens_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


@tokens_app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    person: str = typer.Argument(..., help="The person the token acts for ([people.NAME])."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    actor: str | None = as_option("Create it"),
) -> None:
    """Make a token; it is printed once (only its digest is kept). The API takes it as a
    bearer token, the command line from SHIPYARD_TOKEN."""
    with open_runtime(ctx) as rt:
        by = who(rt, actor, need="administer")
        token_id, token = create_token(rt, person, role, actor=by.name, principal=by.principal)
    err_console.print(
        f"token {token_id} for {escape(person)} as {role}; store it now, it is not shown again:"
    )
    print(token)


@tokens_app.command("list")
@handle_errors
def list_(ctx: typer.Context) -> None:
    """Tokens: who, which role, when last used, revoked or not (never the tokens)."""
    with open_runtime(ctx) as rt:
        rows = list_tokens(rt)
    table = Table("id", "person", "role", "created", "by", "last used", "revoked")
    for row in rows:
        table.add_row(
            row.id,
            escape(row.person),
            row.role,
            timestamp(row.created_at),
            escape(row.created_by),
            timestamp(row.last_used_at),
            timestamp(row.revoked_at),
        )
    console.print(table)


@tokens_app.command("revoke")
@handle_errors
def revoke(
    ctx: typer.Context,
    token_id: str = typer.Argument(..., help="The token's id (see `shipyard tokens list`)."),
    actor: str | None = as_option("Revoke it"),
) -> None:
    """Revoke a token at once: every later request with it is refused."""
    with open_runtime(ctx) as rt:
        revoke_token(rt, token_id, actor=who(rt, actor, need="administer").name)
    console.print(f"token {token_id} revoked")
