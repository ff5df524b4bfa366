"""The ``jsonschema`` check: output files valid against a JSON Schema of the job kind.

Options: ``schema``, the schema's path inside the job kind's folder (``_job/<schema>`` in the
workspace; its ``$schema`` picks the draft, 2020-12 by default, and ``format`` is checked),
and ``files``, glob patterns of the output files to validate (default ``["*.json"]``; use
``**/*.json`` for every folder). Files under ``_job/`` are never validated.

Findings: ``jsonschema.invalid`` per validation error, with the JSON path of the offending
value (``$.offers[0].price``); ``jsonschema.parse`` for a file that is not JSON;
``jsonschema.missing`` when no file matches; ``jsonschema.config`` for a bad option or schema.
The rules live in :func:`shipyard.checks._probe.probe_jsonschema`, run inside the sandbox.
"""

from __future__ import annotations

from shipyard.checks._base import ProbeCheck

__all__ = ["JsonschemaCheck"]


class JsonschemaCheck(ProbeCheck):
    name = "jsonschema"
