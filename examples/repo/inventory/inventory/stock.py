"""Stock levels per SKU, and reservations against them (an order holds stock until shipped)."""

from __future__ import annotations

from dataclasses import dataclass, field


class OutOfStock(Exception):
    """More was asked for than is free to sell."""


@dataclass
class Stock:
    on_hand: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)

    def receive(self, sku: str, quantity: int) -> None:
        if quantity <= 0:
            raise ValueError("a delivery brings at least one unit")
        self.on_hand[sku] = self.on_hand.get(sku, 0) + quantity

    def free(self, sku: str) -> int:
        """Units that can still be sold."""
        return self.on_hand.get(sku, 0) - self.reserved.get(sku, 0)

    def reserve(self, sku: str, quantity: int) -> None:
        """Hold ``quantity`` units of ``sku`` for an order."""
        if quantity <= 0:
            raise ValueError("reserve at least one unit")
        self.reserved[sku] = self.reserved.get(sku, 0) + quantity

    def ship(self, sku: str, quantity: int) -> None:
        """Units that were reserved leave the warehouse."""
        if quantity > self.reserved.get(sku, 0):
            raise ValueError(f"only {self.reserved.get(sku, 0)} unit(s) of {sku} are reserved")
        self.reserved[sku] -= quantity
        self.on_hand[sku] -= quantity
