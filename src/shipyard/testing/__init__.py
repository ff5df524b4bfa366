"""Test doubles for people who build on Shipyard (and for Shipyard's own tests).

No default configuration ever selects these: they are handed to ``Runtime.open(provider=...)``
explicitly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from shipyard.errors import ProviderError
from shipyard.generate import Generation, GenerationRequest

__all__ = ["FunctionProvider", "ScriptedProvider"]


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
    """Replies with whatever ``fn(request)`` returns (files by name)."""

    name = "function"

    def __init__(
        self, fn: Callable[[GenerationRequest], dict[str, str]], *, model: str = "fn"
    ) -> None:
        self.fn, self.model = fn, model

    def generate(self, request: GenerationRequest) -> Generation:
        try:
            files = self.fn(request)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"function provider failed: {exc}") from exc
        return Generation(files=files, provider=self.name, model=self.model)
