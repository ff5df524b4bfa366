"""The OpenTelemetry GenAI semantic conventions for model-call spans, in one place.

The orchestrator opens a span per generation; these functions say which attributes it
carries before the call (what was asked) and after (what came back), so the names live
beside the rest of tracing rather than inside the workflow's steps.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROMPT_EVENT", "REPLY_EVENT", "request_attributes", "response_attributes"]

PROMPT_EVENT = "gen_ai.content.prompt"
"""The span event that carries the prompt (when ``[observe] record_content`` allows)."""
REPLY_EVENT = "gen_ai.content.completion"
"""The span event that carries the reply."""


def request_attributes(
    *, provider: str, model: str, max_tokens: int, temperature: float
) -> dict[str, Any]:
    """What a chat call asked for."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": max_tokens,
        "gen_ai.request.temperature": temperature,
    }


def response_attributes(
    *, model: str, input_tokens: int, output_tokens: int, finish_reason: str
) -> dict[str, Any]:
    """What a chat call answered: the model that replied, the tokens, why it stopped."""
    found: dict[str, Any] = {
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }
    if finish_reason:
        found["gen_ai.response.finish_reasons"] = [finish_reason]
    return found
