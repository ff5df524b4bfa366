"""The ``shipyard`` command line (Typer + Rich): a thin shell over the service layer."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    from shipyard.cli._app import app

    app()
