"""What every release target does, so the canary controller can drive any of them.

A release is keyed (the task id): each call is idempotent for its key, which is what makes a
re-run step after a crash harmless. The life of one release::

    deploy(key, path, files)   the candidate exists beside the live version, taking no traffic
    shift(key, weight)         the candidate takes ``weight`` percent of the path's traffic
    promote(key)               the candidate becomes the live version (traffic 100 %)
    abort(key)                 before promotion: traffic back to the live version, candidate gone
    withdraw(key)              after promotion: undo it (a compensation or a person's rollback)
    health(key)                what is wrong with the deployed candidate, or None
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Deployed", "Promoted", "Target"]


@dataclass(frozen=True, kw_only=True)
class Deployed:
    key: str
    url_path: str
    """Where the release answers: ``/products/sku-1/`` on a site, ``/api/pricing`` for a
    handler, the branch name for git."""
    version: str
    """The candidate's version label on the target."""
    already: bool = False
    """True when the key was deployed before the call (nothing was written)."""


@dataclass(frozen=True, kw_only=True)
class Promoted:
    key: str
    url_path: str
    version: str
    """The live version after the promotion."""
    already: bool = False
    """True when the key was live before the call."""


@runtime_checkable
class Target(Protocol):
    name: str
    kind: str
    served: bool
    """True when Shipyard's gateway serves it (traffic can be shifted and measured)."""

    def deploy(
        self,
        *,
        key: str,
        path: str,
        files: Mapping[str, bytes],
        title: str = "",
        artifact: str = "",
    ) -> Deployed:
        """Put the release of ``key`` beside the live version. ``title`` says what it is;
        ``artifact`` is the id of the artifact ``files`` come from (a target may record it)."""
        ...

    def shift(self, key: str, weight: float) -> None: ...

    def promote(self, key: str) -> Promoted: ...

    def abort(self, key: str) -> bool:
        """True when a candidate was taken down; False when there was none (already done)."""
        ...

    def withdraw(self, key: str) -> str | None:
        """Undo a promoted release; the live version after it, or None when it was not live."""
        ...

    def health(self, key: str) -> str | None: ...
