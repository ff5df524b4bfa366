"""Prompts: the job kind's prompt template rendered with inputs, recalled context and findings."""

from __future__ import annotations

import hashlib
from typing import Any

from shipyard.generate._templates import render
from shipyard.jobs import JobKind
from shipyard.model import Finding

__all__ = ["prompt_hash", "render_prompt"]


def render_prompt(
    kind: JobKind,
    inputs: dict[str, Any],
    *,
    recalled: list[dict[str, Any]],
    feedback: list[Finding],
    previous_files: dict[str, str],
) -> str:
    """The full prompt for one attempt; the repair loop's findings are part of it."""
    context = {
        "inputs": inputs,
        "outputs": sorted(kind.outputs),
        "recalled": recalled,
        "feedback": [f.to_dict() | {"location": f.location()} for f in feedback],
        "previous_files": previous_files,
        "job": {"name": kind.name, "description": kind.description},
    }
    return render(kind.prompt_template, context, name="prompt.md", where=str(kind.folder))


def prompt_hash(prompt: str) -> str:
    return "sha256:" + hashlib.sha256(prompt.encode()).hexdigest()
