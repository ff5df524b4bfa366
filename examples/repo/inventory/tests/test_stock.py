import pytest

from inventory import Stock


def test_received_stock_is_free_to_sell():
    stock = Stock()
    stock.receive("SKU-001", 5)
    assert stock.free("SKU-001") == 5


def test_reserving_holds_units():
    stock = Stock()
    stock.receive("SKU-001", 5)
    stock.reserve("SKU-001", 2)
    assert stock.free("SKU-001") == 3


def test_the_last_unit_can_be_reserved():
    stock = Stock()
    stock.receive("SKU-001", 1)
    stock.reserve("SKU-001", 1)
    assert stock.free("SKU-001") == 0


def test_shipping_takes_reserved_units_out():
    stock = Stock()
    stock.receive("SKU-001", 5)
    stock.reserve("SKU-001", 2)
    stock.ship("SKU-001", 2)
    assert stock.on_hand["SKU-001"] == 3 and stock.free("SKU-001") == 3


def test_an_unknown_sku_has_nothing_free():
    assert Stock().free("SKU-404") == 0


def test_reserving_nothing_is_refused():
    with pytest.raises(ValueError):
        Stock().reserve("SKU-001", 0)
