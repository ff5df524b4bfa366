"""The ``compile`` check: Python syntax of every .py output.

The rules live in :func:`shipyard.checks._probe.probe_compile`, run inside the sandbox.
"""

from __future__ import annotations

from shipyard.checks._base import ProbeCheck

__all__ = ["CompileCheck"]


class CompileCheck(ProbeCheck):
    name = "compile"
