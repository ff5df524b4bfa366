"""What every command shares: the project, the runtime, who is acting, output and errors."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TextIO, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from shipyard.errors import ShipyardError
from shipyard.model import ReleaseState, TaskState

if TYPE_CHECKING:  # what a command uses is imported when it runs (see _app.py)
    from shipyard.config import Project
    from shipyard.service import Identity, Records, Runtime

__all__ = [
    "as_option",
    "console",
    "err_console",
    "handle_errors",
    "login_name",
    "open_records",
    "open_runtime",
    "print_json",
    "project_from",
    "state_style",
    "timestamp",
    "warn_no_two_person_guarantee",
    "who",
]

P = ParamSpec("P")
R = TypeVar("R")


def _console(*, stderr: bool = False) -> Console:
    """A console for people at a terminal; piped or redirected, lines are never wrapped or cut
    to a terminal's width (another program reads them: ids stay whole)."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=100_000, soft_wrap=True)


console = _console()
err_console = _console(stderr=True)

_STATE_STYLES: dict[str, str] = {
    TaskState.QUEUED: "dim",
    TaskState.RUNNING: "blue",
    TaskState.WAITING_INPUT: "yellow",
    TaskState.PAUSED: "yellow",
    TaskState.RESUMING: "cyan",
    TaskState.WAITING_APPROVAL: "yellow",
    TaskState.APPROVED: "cyan",
    TaskState.RELEASING: "cyan",
    TaskState.PUBLISHED: "green",
    TaskState.DONE: "green",
    TaskState.INVALID: "red",
    TaskState.FAILED: "red",
    TaskState.ERROR: "red bold",
    TaskState.REJECTED: "magenta",
    TaskState.DENIED: "magenta",
    TaskState.COMPENSATED: "magenta",
    TaskState.ROLLED_BACK: "magenta",
    ReleaseState.CANARY: "cyan",
    ReleaseState.LIVE: "green",
    ReleaseState.REPLACED: "dim",
    ReleaseState.WITHDRAWN: "magenta",
}
"""How each task and release state is shown (shared values, e.g. ``paused``, share a style)."""


def state_style(state: str) -> str:
    return f"[{_STATE_STYLES.get(state, 'white')}]{state}[/]"


def login_name(*, authenticating: bool) -> str:
    """The process's login name. To authenticate, it comes from the system's user database
    by the real user id, never from $USER or $LOGNAME (which anyone can set)."""
    if not authenticating:
        try:
            return getpass.getuser()
        except OSError:
            return ""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a user id with no entry (some containers): named by its number
        return str(os.getuid())


def who(rt: Runtime, as_: str | None, *, need: str = "") -> Identity:
    """The person acting, and the name they act under (see ``shipyard.service.identify``).

    In a project with a ``[people]`` table: ``SHIPYARD_TOKEN``'s person, else the login's
    (``[people.NAME] os_users``); ``--as`` (else ``$SHIPYARD_USER``) may name someone else
    only where a policy permits ``act_for``. Without ``[people]``: ``--as``, else
    ``$SHIPYARD_USER``, else the login name, taken as given. ``need`` is what the command
    does as token roles name it (``operate``, ``decide``, ``administer``).
    """
    from shipyard.service import TOKEN_VARIABLE, has_people, identify

    asked, asked_via = (
        (as_ or "", "--as") if as_ else (os.environ.get("SHIPYARD_USER", ""), "$SHIPYARD_USER")
    )
    token = os.environ.get(TOKEN_VARIABLE, "")
    return identify(
        rt,
        login=login_name(authenticating=has_people(rt)),
        token=token,
        asked=asked,
        asked_via=asked_via,
        need=need,
    )


def as_option(what: str) -> Any:
    """The ``--as`` option of a command that acts for a person (``what``: "Approve")."""
    return typer.Option(
        None,
        "--as",
        help=f"{what} under this name: yourself, or another person where a policy permits "
        "act_for (default: $SHIPYARD_USER). A project without [people] takes it as given.",
    )


def warn_no_two_person_guarantee(rt: Runtime) -> None:
    """Say plainly, where approvals are given, that a project without people has no
    two-person guarantee."""
    from shipyard.service import NO_TWO_PERSON_GUARANTEE, has_people

    if not has_people(rt):
        err_console.print(f"warning: {NO_TWO_PERSON_GUARANTEE}", style="yellow", markup=False)


def project_from(ctx: typer.Context) -> Project:
    from shipyard.config import load_project

    root = ctx.obj.get("project") if ctx.obj else None
    return load_project(Path(root) if root else None)


@contextmanager
def open_runtime(ctx: typer.Context) -> Iterator[Runtime]:
    """The project's whole runtime: its stages, policies and records."""
    from shipyard.service import Runtime

    rt = Runtime.open(project_from(ctx))
    try:
        yield rt
    finally:
        rt.close()


@contextmanager
def open_records(ctx: typer.Context) -> Iterator[Records]:
    """The project's records alone, for a command that only reads them (``status``,
    ``list``, ``show``): none of the stages, policies or workflows is loaded."""
    from shipyard.service import Records

    records = Records.open(project_from(ctx))
    try:
        yield records
    finally:
        records.close()


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Print a ShipyardError as one clear message with its hint; exit with its status."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ShipyardError as exc:
            # Messages name TOML tables ([tiers.local]): never read them as markup.
            err_console.print(
                f"[red bold]error[/] [red]({exc.code})[/]: {escape(exc.message)}",
                markup=True,
                highlight=False,
            )
            if exc.hint:
                err_console.print(f"  [dim]hint:[/] {escape(exc.hint)}", highlight=False)
            raise typer.Exit(exc.exit_status) from None

    return wrapper


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=_default, ensure_ascii=False))


def timestamp(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """Write a text file beside ``path`` and rename it into place when complete: a failed
    write never leaves a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
