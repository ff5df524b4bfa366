"""The generator contract: a Provider turns a GenerationRequest into a Generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shipyard.jobs import JobKind
from shipyard.model import Finding

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
