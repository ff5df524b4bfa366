"""The ``html`` check: parse errors, title, image alt text, external scripts, JSON-LD syntax;
and, for a job kind whose pages may not run script (``inline_scripts``, false by default for
work that reaches customers), inline scripts, event-handler attributes and ``javascript:`` URLs.

The rules live in :func:`shipyard.checks._probe.probe_html`, run inside the sandbox.
"""

from __future__ import annotations

from shipyard.checks._base import ProbeCheck

__all__ = ["HtmlCheck"]


class HtmlCheck(ProbeCheck):
    name = "html"
