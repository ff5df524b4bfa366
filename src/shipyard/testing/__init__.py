"""Test doubles for people who build on Shipyard (and for Shipyard's own tests).

No default configuration ever selects these: they are handed to ``Runtime.open(provider=...)``
explicitly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from shipyard.errors import ProviderError
from shipyard.generate import Generation, GenerationRequest

__all__ = ["FunctionProvider", "ScriptedProvider", "scaffold_project"]


class ScriptedProvider:
    """Replies with scripted files per attempt number (1-based); the last reply repeats.

    A reply that is an exception instance is raised instead, to script provider failures.
    """

    name = "scripted"

    def __init__(
        self, replies: Sequence[dict[str, str] | Exception], *, model: str = "script"
    ) -> None:
        if not replies:
            raise ValueError("ScriptedProvider needs at least one reply")
        self.replies = list(replies)
        self.model = model
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    def generate(self, request: GenerationRequest) -> Generation:
        with self._lock:
            self.requests.append(request)
        reply = self.replies[min(request.attempt, len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return Generation(files=dict(reply), provider=self.name, model=self.model)


class FunctionProvider:
    """Replies with whatever ``fn(request)`` returns: files by name, or the reply's text (a
    repository change's edits, for a request whose ``reply_format`` is ``edits``)."""

    name = "function"

    def __init__(
        self, fn: Callable[[GenerationRequest], dict[str, str] | str], *, model: str = "fn"
    ) -> None:
        self.fn, self.model = fn, model

    def generate(self, request: GenerationRequest) -> Generation:
        try:
            made = self.fn(request)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"function provider failed: {exc}") from exc
        if isinstance(made, str):
            return Generation(files={}, reply=made, provider=self.name, model=self.model)
        return Generation(files=made, provider=self.name, model=self.model)


def scaffold_project(
    root: Path,
    *,
    concurrency: int | None = None,
    worker_concurrency: int = 8,
    extra_toml: str = "",
) -> Path:
    """Write a one-job-kind project for scale tests and benchmarks; returns its folder.

    Job kind ``note`` (domain ``ops``): one input (``name``), one output (``note.json``)
    rendered by the template tier, one check (the output fits a JSON Schema, in the
    sandbox), released without approval to the static-site target ``site``. What it costs
    is the platform's own work plus one sandboxed check: a floor for any real job kind.
    ``concurrency`` caps the domain's tasks across all workers (none by default).
    """
    cap = f"concurrency = {concurrency}\n" if concurrency is not None else ""
    job = root / "jobs" / "note"
    job.mkdir(parents=True, exist_ok=True)
    (root / "shipyard.toml").write_text(
        '[project]\nname = "scale"\n\n[generate]\ntier = "template"\n\n'
        f'[domains.ops]\njobs = ["jobs/note"]\n{cap}'
        f"worker_concurrency = {worker_concurrency}\n\n"
        '[targets.site]\nkind = "static-site"\nenvironment = "staging"\nrisk = "low"\n' + extra_toml
    )
    (job / "job.toml").write_text(
        'name = "note"\ndescription = "A JSON note for one name"\nrisk = "low"\n'
        'publish = false\ninput_key = "name"\nmax_attempts = 1\n'
        'outputs = { "note.json" = "note.json.j2" }\n'
        'checks = [{ name = "jsonschema", schema = "note.schema.json" }]\n'
        '\n[release]\ntarget = "site"\npath = "notes/{{ name | slug }}"\n'
    )
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    (job / "input.schema.json").write_text(json.dumps(schema))
    note_schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "greeting": {"type": "string"}},
        "required": ["name", "greeting"],
    }
    (job / "note.schema.json").write_text(json.dumps(note_schema))
    (job / "prompt.md.j2").write_text("Write a JSON note greeting {{ inputs.name }}.\n")
    (job / "note.json.j2").write_text('{"name": "{{ name }}", "greeting": "Hello, {{ name }}"}\n')
    return root
