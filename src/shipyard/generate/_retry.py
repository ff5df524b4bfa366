"""Retry as an object: which provider failures are worth another call, and how long to wait.

Rate limits, timeouts, lost connections and 5xx are worth another call; a 4xx (a bad key, an
unknown model) is not. Backoff doubles from ``first_backoff_seconds`` with jitter; a server's
Retry-After replaces it (waited exactly, up to a limit).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from shipyard.errors import MalformedReply, ProviderError
from shipyard.generate._provider import Generation, GenerationRequest, Provider

__all__ = ["RetryPolicy", "call_with_retries"]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When a provider call is made again, and how long to wait first."""

    tries: int = 3
    """Calls per attempt on one tier, the first included (``[generate] tries_per_call``)."""
    first_backoff_seconds: float = 1.0
    """The wait before the second call; each later wait doubles it."""
    jitter: float = 0.2
    """Each wait is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    max_retry_after_seconds: float = 60.0
    """A server's Retry-After is waited exactly, up to this."""
    retry_statuses: frozenset[int] = frozenset({408, 409, 429})
    """HTTP statuses below 500 worth another call (5xx always are; other 4xx never)."""

    def retryable(self, exc: ProviderError) -> bool:
        """A lost connection or timeout (no status), a 5xx, or one of ``retry_statuses``."""
        status = exc.details.get("status")
        return status is None or int(status) in self.retry_statuses or int(status) >= 500

    def wait_before(self, call: int, exc: ProviderError) -> float:
        """Seconds to wait after failed call number ``call`` (1-based)."""
        asked = exc.details.get("retry_after")
        if asked is not None:
            return min(float(asked), self.max_retry_after_seconds)
        spread = 1 - self.jitter + 2 * self.jitter * random.random()
        return self.first_backoff_seconds * 2.0 ** (call - 1) * spread


def call_with_retries(
    provider: Provider,
    request: GenerationRequest,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Generation:
    """The provider's generation, calling again on transient failures as ``policy`` says.

    A malformed reply is not retried here: it is a failed attempt the repair loop handles.
    """
    for call in range(1, policy.tries):
        try:
            return provider.generate(request)
        except MalformedReply:
            raise
        except ProviderError as exc:
            if not policy.retryable(exc):
                raise
            sleep(policy.wait_before(call, exc))
    return provider.generate(request)
