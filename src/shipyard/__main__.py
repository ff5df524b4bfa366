"""``python -m shipyard`` is the ``shipyard`` command."""

from __future__ import annotations

from shipyard.cli import main

main()
