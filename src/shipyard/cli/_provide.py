"""``shipyard provide`` and ``resume``: a person writes the code, or lets a paused task go on."""

from __future__ import annotations

from pathlib import Path

import typer

from shipyard.cli._common import as_option, console, handle_errors, open_runtime, who
from shipyard.errors import InputError
from shipyard.service import provide as provide_code
from shipyard.service import resume as resume_task

MAX_FILE_BYTES = 5_000_000


def _read(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named by its base name) -> (output name, text)."""
    name, equals, path_text = spec.partition("=")
    if not equals:
        name, path_text = Path(spec).name, spec
    path = Path(path_text)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(
                f"--file {spec}: {size} bytes is more than the {MAX_FILE_BYTES} a file may hold",
                hint="generated outputs are source files; check the path",
            )
        return name, path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"--file {spec}: no such file {path}", hint="check the path") from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            f"--file {spec}: {path} is not UTF-8 text", hint="outputs are text files"
        ) from exc
    except IsADirectoryError as exc:
        raise InputError(f"--file {spec}: {path} is a folder", hint="name a file") from exc


@handle_errors
def provide(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id (or a unique prefix) in state waiting_input."),
    files: list[str] = typer.Option(
        ...,
        "--file",
        "-f",
        help="An output as NAME=PATH, or PATH when its base name is the output's name; "
        "once per output.",
    ),
    as_: str | None = as_option("Supply it"),
) -> None:
    """Supply the code for a task waiting for a person; it goes through the same checks.

    `shipyard show TASK --prompt` prints what the task asks for, with the findings of the
    previous attempt when it is a repair.
    """
    supplied: dict[str, str] = {}
    for spec in files:
        name, text = _read(spec)
        if name in supplied:
            raise InputError(f"--file names {name!r} twice", hint="pass each output once")
        supplied[name] = text
    with open_runtime(ctx) as rt:
        person = who(rt, as_, need="operate")
        row = provide_code(rt, task, supplied, actor=person.name, principal=person.principal)
    console.print(
        f"{row.id} {row.state}: {len(supplied)} file(s) from {person.describe()}; "
        "a worker checks them"
    )


@handle_errors
def resume(
    ctx: typer.Context,
    tasks: list[str] = typer.Argument(..., help="Task ids (or unique prefixes) in state paused."),
    as_: str | None = as_option("Resume"),
) -> None:
    """Let tasks paused on a budget go on (after raising it, or on a new day)."""
    with open_runtime(ctx) as rt:
        person = who(rt, as_, need="operate")
        for ref in tasks:
            row = resume_task(rt, ref, actor=person.name, principal=person.principal)
            console.print(f"{row.id} {row.state}")
