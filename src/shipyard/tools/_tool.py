"""The tool contract: an action with an effect outside Shipyard, and how to undo it.

A tool declares its capability (what policy authorizes), acts under an idempotency key (a
repeated call with the same key must not act twice: the orchestrator's journal replays the
recorded result, and the key travels to the far side where it can, e.g. as the HTTP
``Idempotency-Key`` header, for the crash between acting and recording), and may offer a
compensation that undoes its effect when a later step of the task fails.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Tool"]


@runtime_checkable
class Tool(Protocol):
    name: str
    """The registry name job kinds use."""
    capability: str
    """What it can do, for policy (``publish``, ``http.post``, ...)."""
    reversible: bool
    """True when ``compensate`` can undo a call."""

    def call(self, args: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Act once for ``key``; return what happened (JSON-able). Raise ToolError if not."""
        ...

    def compensate(
        self, args: dict[str, Any], result: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        """Undo the call that returned ``result`` (idempotent under ``key``)."""
        ...
