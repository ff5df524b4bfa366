"""A local stand-in for the Chat Completions API, spoken over real HTTP on loopback."""

from __future__ import annotations

from typing import Any

from generate._fake_http import MAX_DELAY, FakeAPI, Recorded, Scripted

__all__ = ["MAX_DELAY", "FakeOpenAI", "Recorded", "Scripted"]


class FakeOpenAI(FakeAPI):
    """A scripted Chat Completions server on 127.0.0.1 and a free port."""

    ROUTE = "/v1/chat/completions"

    @property
    def url(self) -> str:
        """The API's base URL, ``/v1`` included, as ``generate.base_url`` takes it."""
        return f"{self.root}/v1"

    def error_body(self, message: str, error_type: str) -> Any:
        """``{"error": {message, type, param, code}}``."""
        return {"error": {"message": message, "type": error_type, "param": None, "code": None}}

    def reply(
        self,
        content: str | None,
        *,
        model: str = "local-model",
        finish_reason: str | None = "stop",
        prompt_tokens: int = 11,
        completion_tokens: int = 22,
        delay: float = 0.0,
    ) -> None:
        """A successful completion whose one choice says ``content``."""
        self.json(
            200,
            {
                "id": f"chatcmpl-{self.scripted_id():04d}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
            delay=delay,
        )
