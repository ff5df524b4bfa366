"""What each token role may try (the API and the console check the same table)."""

from __future__ import annotations

from typing import Final

__all__ = ["MAY", "may"]

MAY: Final[dict[str, frozenset[str]]] = {
    "read": frozenset({"viewer", "operator", "approver", "admin"}),
    "operate": frozenset({"operator", "admin"}),
    "decide": frozenset({"approver", "admin"}),
    "audit": frozenset({"admin"}),
}


def may(role: str, what: str) -> bool:
    return role in MAY[what]
