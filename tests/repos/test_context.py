"""The repository map and the context for a goal: Python symbols with signatures (even in a
file that does not parse), binary and ignored files left out; the files the goal is about
ranked first, earlier changes' files boosted, and everything under the token budget."""

from __future__ import annotations

import hashlib
from pathlib import Path

from repos_support import copy_of
from shipyard.repos import (
    CHARS_PER_TOKEN,
    build_context,
    estimate_tokens,
    map_files,
    map_working_copy,
    terms,
)

SHOP = {
    ".gitignore": "*.log\n",
    "README.md": "# Shop\n\nA small shop.\n",
    "shop/__init__.py": "",
    "shop/cart.py": (
        "from decimal import Decimal\n\n\n"
        "class Cart:\n"
        '    """Items a customer is buying."""\n\n'
        "    def __init__(self) -> None:\n"
        "        self.items: list[Item] = []\n\n"
        "    def add(self, item: Item, quantity: int = 1) -> None:\n"
        "        self.items.append(item)\n\n"
        "    def total(self) -> Decimal:\n"
        "        return sum((i.price for i in self.items), Decimal(0))\n"
    ),
    "shop/pricing/discount.py": (
        "def apply_discount(total, code):\n"
        '    """Take a discount code off the total."""\n'
        "    return total * DISCOUNT_CODES.get(code, 1)\n\n\n"
        "DISCOUNT_CODES = {'WELCOME10': 0.9}\n"
    ),
    "shop/shipping.py": (
        "def shipping_cost(weight_kg: float) -> float:\n    return 4.5 + weight_kg\n"
    ),
    "shop/catalog.py": "class Product:\n    name: str\n    price: float\n",
    "shop/broken.py": "def half(x):\n    return x /\n\nclass Later:\n    def method(self, y):\n",
    "tests/test_cart.py": "from shop.cart import Cart\n\n\ndef test_empty():\n    assert Cart()\n",
    "static/logo.png": b"\x89PNG\r\n\x1a\n\0\0\0" + bytes(range(256)),
}


def test_terms_split_identifiers_and_drop_common_words() -> None:
    assert terms("Fix parsePrice in the CartTotal for apply_discount") == [
        "parseprice",
        "parse",
        "price",
        "carttotal",
        "cart",
        "total",
        "apply_discount",
        "apply",
        "discount",
    ]
    assert terms("HTTPServer2") == ["httpserver2", "http", "server"]


def test_the_map_lists_symbols_with_signatures(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(SHOP))
    (copy.path / "debug.log").write_text("ignored\n")
    repo_map = map_working_copy(copy)
    paths = [f.path for f in repo_map.files]
    assert "debug.log" not in paths and "static/logo.png" not in paths
    assert "README.md" in paths and ".gitignore" in paths
    cart = repo_map.get("shop/cart.py")
    assert cart is not None and cart.kind == "python" and not cart.note
    assert [(s.kind, s.name, s.line) for s in cart.symbols] == [
        ("class", "Cart", 4),
        ("method", "Cart.__init__", 7),
        ("method", "Cart.add", 10),
        ("method", "Cart.total", 13),
    ]
    assert cart.symbols[2].signature == "def add(self, item: Item, quantity: int=1) -> None"
    rendered = repo_map.render(["shop/cart.py"])
    assert rendered.splitlines()[0].startswith("shop/cart.py (")
    assert "    def total(self) -> Decimal" in rendered


def test_a_file_that_does_not_parse_still_gives_its_symbols(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(SHOP))
    broken = map_working_copy(copy).get("shop/broken.py")
    assert broken is not None and broken.note == "does not parse (line 2)"
    assert [(s.kind, s.name) for s in broken.symbols] == [
        ("function", "half"),
        ("class", "Later"),
        ("method", "Later.method"),
    ]


def test_the_files_a_goal_is_about_rank_first(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(SHOP))
    repo_map = map_working_copy(copy)
    context = build_context(
        "Apply the discount code to the cart total", repo_map, copy.path, max_tokens=4000
    )
    top = context.paths[:2]
    assert set(top) == {"shop/pricing/discount.py", "shop/cart.py"}, context.paths
    assert "shop/shipping.py" not in context.paths
    assert context.text.startswith("# Repository map\n")
    assert "## shop/pricing/discount.py\n```python\ndef apply_discount" in context.text
    assert context.digest == "sha256:" + hashlib.sha256(context.text.encode()).hexdigest()
    assert context.tokens == estimate_tokens(context.text) <= 4000


def test_a_file_named_in_the_goal_and_earlier_changes_are_boosted(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(SHOP))
    repo_map = map_working_copy(copy)
    named = build_context("Make shipping.py cheaper for the cart", repo_map, copy.path,
                          max_tokens=4000)  # fmt: skip
    assert named.paths[0] == "shop/shipping.py"
    plain = build_context("price", repo_map, copy.path, max_tokens=4000)
    assert plain.paths == ["shop/catalog.py", "shop/cart.py"]
    boosted = build_context("price", repo_map, copy.path, max_tokens=4000,
                            touched=["shop/cart.py", "shop/shipping.py"])  # fmt: skip
    assert boosted.paths == ["shop/cart.py", "shop/catalog.py", "shop/shipping.py"]


def test_the_context_respects_the_token_budget_and_trims_a_large_file(tmp_path: Path) -> None:
    body = "".join(f"def helper_{n}(value):\n    return value + {n}\n\n\n" for n in range(400))
    body += "def refund_order(order):\n    return order.total * -1\n\n\n"
    body += "".join(f"def other_{n}(value):\n    return value - {n}\n\n\n" for n in range(400))
    (tmp_path / "big.py").write_text(body)
    (tmp_path / "notes.md").write_text("Nothing about refunds here.\n" * 3)
    for n in range(200):
        (tmp_path / f"mod_{n}.py").write_text(f"def f{n}():\n    pass\n")
    paths = ["big.py", "notes.md", *(f"mod_{n}.py" for n in range(200))]
    repo_map = map_files(tmp_path, paths)
    context = build_context("Fix refund_order for orders", repo_map, tmp_path, max_tokens=1500)
    assert len(context.text) <= 1500 * CHARS_PER_TOKEN and context.tokens <= 1500
    big = next(f for f in context.files if f.path == "big.py")
    assert big.trimmed and context.paths[0] == "big.py"
    assert "def refund_order(order):\n    return order.total * -1" in context.text
    assert "(trimmed: lines " in context.text and "omitted)" in context.text
    assert 0 < context.map_entries < context.map_total == 202
    assert "more files not shown" in context.text
    assert context.to_dict()["files"][0]["trimmed"] is True
    tiny = build_context("Fix refund_order", repo_map, tmp_path, max_tokens=500)
    assert tiny.tokens <= 500
