"""The ``jsonld`` check (JSON-LD present, of the wanted @type, valid against a schema): see :func:`shipyard.checks._probe.probe_jsonld` for the rules it applies."""

from __future__ import annotations

from shipyard.checks._base import ProbeCheck

__all__ = ["JsonldCheck"]


class JsonldCheck(ProbeCheck):
    name = "jsonld"
