"""The ``jsonld`` check: JSON-LD present, of the wanted @type, valid against a schema.

The rules live in :func:`shipyard.checks._probe.probe_jsonld`, run inside the sandbox.
"""

from __future__ import annotations

from shipyard.checks._base import ProbeCheck

__all__ = ["JsonldCheck"]


class JsonldCheck(ProbeCheck):
    name = "jsonld"
