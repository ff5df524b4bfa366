"""A local stand-in for Anthropic's Messages API, spoken over real HTTP on loopback."""

from __future__ import annotations

from typing import Any

from generate._fake_http import FakeAPI, Recorded, Scripted

__all__ = ["FakeAnthropic", "Recorded", "Scripted"]


class FakeAnthropic(FakeAPI):
    """A scripted Messages API server on 127.0.0.1 and a free port."""

    ROUTE = "/v1/messages"

    @property
    def url(self) -> str:
        """The root URL to use as the client's base URL."""
        return self.root

    def error_body(self, message: str, error_type: str) -> Any:
        """``{"type": "error", "error": {type, message}}``."""
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def reply(
        self,
        text: str | list[dict[str, Any]],
        *,
        model: str = "claude-test-1",
        stop_reason: str | None = "end_turn",
        input_tokens: int = 11,
        output_tokens: int = 22,
        delay: float = 0.0,
    ) -> None:
        """A successful message; ``text`` is one text block, or a list of raw content blocks."""
        content = [{"type": "text", "text": text}] if isinstance(text, str) else text
        self.json(
            200,
            {
                "id": f"msg_{self.scripted_id():04d}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            },
            delay=delay,
        )
