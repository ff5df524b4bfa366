"""The generator contract: a Provider turns a GenerationRequest into a Generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from shipyard.jobs import JobKind
from shipyard.model import Finding
from shipyard.sandbox import Mount

__all__ = ["Generation", "GenerationRequest", "Provider"]


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """Everything a generator may use for one attempt."""

    task_id: str
    """The task this attempt belongs to."""
    kind: JobKind
    """The job kind: output files, templates, schema."""
    inputs: dict[str, Any]
    """The validated inputs."""
    attempt: int
    """1 for the first attempt, then 2, 3 ... in the repair loop."""
    prompt: str
    """The rendered prompt (recorded whether or not the provider reads it)."""
    previous_files: dict[str, str] = field(default_factory=dict)
    """The previous attempt's output, when this is a repair."""
    feedback: tuple[Finding, ...] = ()
    """The previous attempt's findings, when this is a repair."""
    recalled: tuple[dict[str, Any], ...] = ()
    """Context recalled from memory (id, kind, text)."""
    reply_format: Literal["files", "edits"] = "files"
    """``files``: a model replies with the job kind's output files (``REPLY_FORMAT``);
    ``edits``: with edits to a repository (``shipyard.repos.EDIT_FORMAT``), parsed by the
    caller, so a provider hands back the raw reply and no files."""
    goal: str = ""
    """A repository change's goal, in words (``SHIPYARD_GOAL`` for a coding agent)."""
    workdir: Path | None = None
    """A repository change's working copy: a coding agent (the ``command`` provider)
    changes it in place; the caller reads the change from it afterwards."""
    mounts: tuple[Mount, ...] = ()
    """What a sandboxed generator needs to see besides ``workdir`` (the object stores the
    working copy's ``.git`` borrows from), read-only."""


@dataclass(frozen=True, kw_only=True)
class Generation:
    """What a provider produced for one attempt."""

    files: dict[str, str]
    """Output file name -> content. Must name exactly the job kind's outputs."""
    provider: str
    """The provider's name (``template``, ``openai`` ...)."""
    model: str
    """The model (or template version) that produced it."""
    input_tokens: int = 0
    """Prompt tokens billed, 0 for generators without tokens."""
    output_tokens: int = 0
    """Completion tokens billed."""
    reply: str = ""
    """The model's raw reply (empty for generators that render files directly)."""
    finish_reason: str = ""
    """Why the model stopped (``stop``, ``length`` ...), as the API reported it."""


@runtime_checkable
class Provider(Protocol):
    """A source of generated code. Implementations must be safe to call from many threads."""

    name: str

    def generate(self, request: GenerationRequest) -> Generation:
        """Produce the job kind's output files; raise ProviderError if it cannot."""
        ...
