"""``shipyard notifications``: the webhooks' deliveries, sending dead ones again, a test event."""

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
    print_json,
)
from shipyard.cli._common import who as who_acts
from shipyard.errors import InputError
from shipyard.observe import Delivery
from shipyard.service import notifications, retry_notifications, send_test_notification

notifications_app = typer.Typer(
    help="CloudEvents webhooks: deliveries, retries, a test event.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _row(d: Delivery) -> dict[str, object]:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "type": d.type,
        "subject": d.subject,
        "endpoint": d.endpoint,
        "state": d.state,
        "sending": d.sending,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "last_attempt_at": d.last_attempt_at,
        "delivered_at": d.delivered_at,
    }


def _when(d: Delivery) -> str:
    if d.state == "delivered" and d.delivered_at is not None:
        return "delivered " + d.delivered_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if d.sending:
        return "sending now"
    if d.state == "pending" and d.next_attempt_at is not None:
        return "next " + d.next_attempt_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return ""


@notifications_app.callback()
def list_(
    ctx: typer.Context,
    state: str = typer.Option("", "--state", help="Only pending, delivered or dead."),
    endpoint: str = typer.Option("", "--endpoint", help="Only this [notify.NAME] endpoint."),
    limit: int = typer.Option(100, "--limit", min=1, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Deliveries of notifications to the [notify.NAME] endpoints, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    _list(ctx, state=state, endpoint=endpoint, limit=limit, as_json=as_json)


@handle_errors
def _list(ctx: typer.Context, *, state: str, endpoint: str, limit: int, as_json: bool) -> None:
    with open_runtime(ctx) as rt:
        found = notifications(rt, state=state, endpoint=endpoint, limit=limit)
    if as_json:
        print_json({"deliveries": [_row(d) for d in found.deliveries], "unrouted": found.unrouted})
        return
    if found.unrouted and found.endpoints:
        err_console.print(f"{found.unrouted} event(s) not yet routed: a running worker does it")
    elif found.unrouted:
        err_console.print(
            f"{found.unrouted} event(s) recorded, none sent: no [notify.NAME] endpoint is "
            "declared in shipyard.toml (see Notifications in docs/operations.md)"
        )
    if not found.deliveries:
        console.print("no deliveries" + (f" {state}" if state else ""))
        return
    table = Table("id", "event", "type", "subject", "endpoint", "state", "attempts", "last", "when")
    for d in found.deliveries:
        last = (str(d.last_status) if d.last_status is not None else "") + (
            f" {d.last_error}" if d.last_error and d.state != "delivered" else ""
        )
        table.add_row(
            str(d.id),
            d.event_id,
            d.type.removeprefix("dev.shipyard."),
            escape(d.subject),
            escape(d.endpoint),
            d.state,
            str(d.attempts),
            escape(last.strip()),
            _when(d),
        )
    console.print(table)


@notifications_app.command("retry")
@handle_errors
def retry(
    ctx: typer.Context,
    ids: list[int] = typer.Argument(None, help="Delivery ids (see `shipyard notifications`)."),
    dead: bool = typer.Option(False, "--dead", help="Every dead delivery."),
    as_: str | None = as_option("Retry"),
) -> None:
    """Send dead (or pending) deliveries again now, with a fresh count of attempts; a running
    worker sends them."""
    if not ids and not dead:
        raise InputError("name the deliveries to retry", hint="give their ids, or --dead")
    with open_runtime(ctx) as rt:
        actor = who_acts(rt, as_, need="operate").name
        retried = retry_notifications(rt, ids or [], dead=dead, actor=actor)
    if not retried:
        console.print("no dead deliveries")
        return
    console.print(
        f"{len(retried)} deliver{'y' if len(retried) == 1 else 'ies'} due again: "
        + ", ".join(map(str, retried))
    )


@notifications_app.command("test")
@handle_errors
def test(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The endpoint ([notify.NAME])."),
    as_: str | None = as_option("Send it"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send a dev.shipyard.test event to an endpoint now, signed as every delivery is, and say
    what its receiver answered (exit status 1 when it was not delivered)."""
    with open_runtime(ctx) as rt:
        sent = send_test_notification(rt, name, actor=who_acts(rt, as_, need="operate").name)
    if as_json:
        print_json(_row(sent))
    elif sent.state == "delivered":
        console.print(
            f"delivered to {escape(name)}: HTTP {sent.last_status} (event {sent.event_id}, "
            f"delivery {sent.id})"
        )
    else:
        err_console.print(
            f"[red]not delivered[/] to {escape(name)}: {escape(sent.last_error)} "
            f"(delivery {sent.id}; `shipyard notifications retry {sent.id}` sends it again)"
        )
    if sent.state != "delivered":
        raise typer.Exit(1)
