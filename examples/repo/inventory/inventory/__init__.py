"""Stock keeping for a small shop: what is on hand, reserved and free to sell."""

from inventory.stock import OutOfStock, Stock

__all__ = ["OutOfStock", "Stock"]
