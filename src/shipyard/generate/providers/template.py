"""The template tier: Jinja2 code templates rendered with the inputs. Offline, deterministic.

Shipyard uses it whenever no model is configured. It ignores the prompt and the repair
feedback (the same inputs always render the same output), so a failing template fails every
attempt the same way and the task ends failed instead of looping.
"""

from __future__ import annotations

from collections.abc import Mapping

from shipyard.config import TierSettings
from shipyard.generate._provider import Generation, GenerationRequest
from shipyard.generate._templates import render

__all__ = ["TemplateProvider"]


class TemplateProvider:
    name = "template"

    def __init__(
        self, settings: TierSettings | None = None, *, secrets: Mapping[str, str] = {}
    ) -> None:
        """The template tier needs no settings; it takes them like every provider does."""

    def generate(self, request: GenerationRequest) -> Generation:
        kind = request.kind
        context = dict(request.inputs)
        files = {
            output: render(source, context, name=output, where=str(kind.folder))
            for output, source in kind.outputs.items()
        }
        return Generation(
            files=files, provider=self.name, model=f"template@{kind.template_hash[7:19]}"
        )
