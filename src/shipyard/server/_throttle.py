"""Sliding one-minute windows, in this process: requests per token, failed sign-ins and
unauthenticated requests per client address, figures computed per token.

Each window counts events per key over the last minute. ``hit`` counts an event when there
is room and otherwise says how long until there is; ``wait`` only asks; ``add`` counts
without asking (a failure that already happened).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["RateLimiter", "retry_seconds"]

_PRUNE_AT: Final = 10_000
"""Keys kept before the idle ones are dropped (addresses come and go)."""


class RateLimiter:
    """At most ``per_minute`` events per key in any sixty seconds."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _window(self, key: str, now: float) -> deque[float]:
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) >= _PRUNE_AT:
                self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - 60}
            seen = self._seen[key] = deque()
        while seen and seen[0] <= now - 60:
            seen.popleft()
        return seen

    def wait_for(self, key: str) -> float:
        """0 when the event may happen now (and counts it); else seconds until it may."""
        return self.hit(key)

    def hit(self, key: str) -> float:
        """0 when the event may happen now (and counts it); else seconds until it may."""
        now = self.clock()
        with self._lock:
            seen = self._window(key, now)
            if len(seen) >= self.per_minute:
                return seen[0] + 60 - now
            seen.append(now)
            return 0.0

    def wait(self, key: str) -> float:
        """Seconds until an event of ``key`` would be allowed (0: now); counts nothing."""
        now = self.clock()
        with self._lock:
            seen = self._window(key, now)
            return seen[0] + 60 - now if len(seen) >= self.per_minute else 0.0

    def add(self, key: str) -> None:
        """Count an event that happened, room or not."""
        now = self.clock()
        with self._lock:
            self._window(key, now).append(now)


def retry_seconds(wait: float) -> int:
    """A ``Retry-After`` value for a wait: whole seconds, at least one."""
    return max(1, int(wait + 0.999))
