"""The ``compile`` check (Python syntax of every .py output): see :func:`shipyard.checks._probe.probe_compile` for the rules it applies."""

from __future__ import annotations

from shipyard.checks._base import ProbeCheck

__all__ = ["CompileCheck"]


class CompileCheck(ProbeCheck):
    name = "compile"
