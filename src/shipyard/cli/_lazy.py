"""Commands registered by name and imported only when they run.

``shipyard`` has some sixty commands standing on every layer of Shipyard; importing all of
them to answer one costs seconds (DBOS, FastAPI, SQLAlchemy, the orchestrator). The root group
here knows each command by name, the ``module:attribute`` that defines it and the one-line
summary ``shipyard --help`` lists, and imports a command's module only when that command is
run or asked for its own help. The summaries are kept beside the names for that reason; a
test holds each to its command's docstring.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # Typer vendors Click; its types live in typer._click
    from typer._click import Command

__all__ = ["Entry", "LazyGroup"]


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One command (or group of commands) of a :class:`LazyGroup`."""

    name: str
    """What the user types: ``status``, ``sandbox``."""
    target: str
    """``module:attribute``: a command function, or a ``typer.Typer`` holding a group."""
    summary: str
    """What ``shipyard --help`` lists beside the name: the first paragraph of the command's
    help, on one line."""


class _Unloaded(TyperCommand):
    """What a help listing shows for a command whose module is not imported."""

    def invoke(self, ctx: Any) -> Any:  # never reached: get_command loads before invoking
        raise RuntimeError(f"command {self.name!r} was invoked before it was loaded")


class LazyGroup(TyperGroup):
    """A Typer root group whose commands are :class:`Entry` items, imported on first use.

    Subclasses set ``entries``; commands registered on the Typer app itself load as usual.
    """

    entries: ClassVar[Sequence[Entry]] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._targets: dict[str, Entry] = {}
        self._listing = False
        for entry in self.entries:
            self._targets[entry.name] = entry
            # Listed (help, "did you mean") by name before anything is imported.
            self.commands.setdefault(entry.name, _Unloaded(name=entry.name, help=entry.summary))

    def get_command(self, ctx: Any, cmd_name: str) -> Command | None:
        found = self.commands.get(cmd_name)
        if not isinstance(found, _Unloaded) or self._listing:
            return found
        command = self._load(self._targets[cmd_name])
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Listing the commands needs only their names and summaries: import none of them.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def _load(self, entry: Entry) -> Command:
        module, _, attribute = entry.target.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if isinstance(found, typer.Typer):
            command: Command = typer.main.get_group(found)
        else:
            single = typer.Typer(add_completion=False, rich_markup_mode=self.rich_markup_mode)
            single.command(entry.name)(found)
            command = typer.main.get_command(single)
        command.name = entry.name
        return command
