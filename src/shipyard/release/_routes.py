"""The routing table a served target shares with the gateway: which release answers a path.

``routes.json`` in the target's folder maps a URL prefix to its route::

    {"/products/sku-1/": {"path": "products/sku-1", "candidate": "KEY", "weight": 5.0,
                          "live": "KEY0", "previous": ["KEY-1"]}}

``candidate`` takes ``weight`` percent of the prefix's visitors; the rest see the live
version (``live`` for a handler; a site's live version is its ``current`` link). Writers
hold the target's lock and replace the file atomically, so the gateway, which re-reads it
whenever its modification time changes, sees the old table or the new one, never half.
A visitor's arm is a hash of the release key and the visitor's id: the same visitor stays on
the same arm while the weight rises, and a weight of 0 sends everyone to the live version
on the next request.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shipyard.errors import StateError

__all__ = [
    "ROUTES_FILE",
    "RouteTable",
    "bucket",
    "find_route",
    "locked",
    "read_routes",
    "set_weight",
    "write_routes",
]

ROUTES_FILE = "routes.json"


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """The target's write lock (one writer at a time, across processes)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_routes(root: Path) -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads((root / ROUTES_FILE).read_text()))
    except FileNotFoundError:
        return {}


def write_routes(root: Path, routes: dict[str, dict[str, Any]]) -> None:
    """Replace the table atomically and durably (hold :func:`locked`)."""
    temp = root / f".{ROUTES_FILE}.tmp"
    temp.write_text(json.dumps(routes, indent=1, sort_keys=True))
    with open(temp) as handle:
        os.fsync(handle.fileno())
    os.replace(temp, root / ROUTES_FILE)


def find_route(routes: dict[str, dict[str, Any]], key: str, role: str = "candidate") -> str | None:
    """The prefix whose ``role`` (candidate or live) is release ``key``."""
    return next((p for p, r in routes.items() if r.get(role) == key), None)


def set_weight(root: Path, target: str, key: str, weight: float) -> None:
    """Give release ``key``'s candidate ``weight`` percent of its path's visitors."""
    with locked(root):
        routes = read_routes(root)
        prefix = find_route(routes, key)
        if prefix is None:
            raise StateError(
                f"target {target!r}: release {key} has no candidate deployed",
                hint="deploy it first (a promoted or aborted release takes no weight)",
            )
        routes[prefix]["weight"] = float(weight)
        write_routes(root, routes)


def bucket(key: str, visitor: str) -> float:
    """The visitor's place in [0, 100) for this release: below the weight means candidate."""
    digest = hashlib.blake2b(f"{key}\0{visitor}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


class RouteTable:
    """A target's routes as the gateway reads them: cached until the file changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stamp: int | None = -1
        self._prefixes: list[tuple[str, dict[str, Any]]] = []

    def _refresh(self) -> None:
        try:
            stamp: int | None = os.stat(self.root / ROUTES_FILE).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            routes = read_routes(self.root) if stamp is not None else {}
            # Longest prefix first, so a page's route wins over its section's.
            self._prefixes = sorted(routes.items(), key=lambda item: -len(item[0]))
            self._stamp = stamp

    def match(self, path: str) -> tuple[str, dict[str, Any]] | None:
        """The route serving ``path`` (``/products/sku-1`` matches ``/products/sku-1/``)."""
        self._refresh()
        for prefix, route in self._prefixes:
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                return prefix, route
        return None

    def routes(self) -> list[tuple[str, dict[str, Any]]]:
        self._refresh()
        return list(self._prefixes)
