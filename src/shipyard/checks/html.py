"""The ``html`` check (parse errors, title, image alt text, external scripts, JSON-LD syntax): see :func:`shipyard.checks._probe.probe_html` for the rules it applies."""

from __future__ import annotations

from shipyard.checks._base import ProbeCheck

__all__ = ["HtmlCheck"]


class HtmlCheck(ProbeCheck):
    name = "html"
