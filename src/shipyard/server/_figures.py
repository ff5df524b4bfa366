"""The cost of the figures (``/api/v1/stats``, ``/budgets``, the console's figures page),
bounded: each reads every task of its window, seconds of work at tens of thousands of tasks.

An answer is kept for ``figures_cache_seconds`` and served again to anyone asking the same
question; a question asked while it is being computed waits for that computation instead of
starting its own. A computation (a cache miss) counts against the caller's
``figures_per_minute``, and one runs at a time in this process, so however many requests a
token may make, the figures cost at most that many computations a minute per token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Final, TypeVar

from shipyard.server._problems import ApiProblem
from shipyard.server._throttle import RateLimiter, retry_seconds

__all__ = ["Figures"]

T = TypeVar("T")

_WAIT_SECONDS: Final = 60.0
"""How long a request waits for the computation before it (one at a time) answers 503."""


class Figures:
    """Computed figures, cached and rationed (see the module's docstring)."""

    def __init__(
        self, *, ttl: float, per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.clock = ttl, clock
        self.computed = 0
        """Computations run so far (the tests count them)."""
        self._kept: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._computing = threading.Lock()
        self._rations = RateLimiter(per_minute, clock)

    def _cached(self, key: Hashable) -> tuple[bool, Any]:
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] > self.clock():
            return True, kept[1]
        return False, None

    def get(self, key: Hashable, who: str, compute: Callable[[], T]) -> T:
        """The answer to ``key``: kept, or computed now on ``who``'s ration."""
        hit, value = self._cached(key)
        if hit:
            return value  # type: ignore[no-any-return]
        wait = self._rations.hit(who)
        if wait > 0:
            raise ApiProblem(
                429,
                "rate-limited",
                f"more than {self._rations.per_minute} figures computed in a minute with this "
                "token",
                f"figures are kept {self.ttl:g} s: ask the same question again, or retry "
                f"after {retry_seconds(wait)} s",
                retry_after=retry_seconds(wait),
            )
        if not self._computing.acquire(timeout=_WAIT_SECONDS):
            raise ApiProblem(503, "unavailable", "the figures are busy", "try again shortly")
        try:
            hit, value = self._cached(key)  # computed while this request waited
            if hit:
                return value  # type: ignore[no-any-return]
            value = compute()
            self.computed += 1
            now = self.clock()
            with self._lock:
                self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
                self._kept[key] = (now + self.ttl, value)
            return value
        finally:
            self._computing.release()
