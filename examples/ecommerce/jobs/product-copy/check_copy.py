"""The product-copy rules, run in the check workspace: ``python -I _job/check_copy.py``.

Standard library only. Reads ``copy.md`` and ``product.jsonld`` from the current folder and
exits 0 when the copy passes; otherwise it prints one ``rule: message`` line per problem on
stderr and exits 1. Rules:

copy.missing      copy.md exists
copy.too-short    at least 200 characters
copy.too-long     at most 2000 characters
copy.heading      a headline: a line starting with "# "
copy.placeholder  no "lorem ipsum"
copy.price        every price in the copy equals product.jsonld's offers.price
copy.jsonld       product.jsonld is readable, so the prices can be compared
"""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

COPY = Path("copy.md")
JSONLD = Path("product.jsonld")
MIN_CHARS = 200
MAX_CHARS = 2000
CODES = ("USD", "EUR", "GBP")

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
# A price is an amount tagged with a currency: "$1,249.00", "1249.00 USD", "EUR 45".
_PRICES = (
    re.compile(rf"(?P<symbol>[$€£])\s?(?P<amount>{_NUMBER})"),
    re.compile(rf"\b(?P<code>[A-Z]{{3}})\s?(?P<amount>{_NUMBER})"),
    re.compile(rf"(?P<amount>{_NUMBER})\s?(?P<code>[A-Z]{{3}})\b"),
)


def _amount(text: str) -> Decimal | None:
    try:
        return Decimal(text.rstrip(",.").replace(",", ""))
    except InvalidOperation:
        return None


def _offer() -> tuple[Decimal, str]:
    """offers.price and offers.priceCurrency from product.jsonld; ValueError if unreadable."""
    try:
        document = json.loads(JSONLD.read_text(encoding="utf-8"))
        offers = document["offers"]
        price = _amount(str(offers["price"]))
        currency = str(offers.get("priceCurrency", ""))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read offers.price from {JSONLD}: {exc!r}") from exc
    if price is None:
        raise ValueError(f"offers.price in {JSONLD} is not a number: {offers['price']!r}")
    return price, currency


def problems(text: str) -> list[str]:
    found = []
    size = len(text.strip())
    if size < MIN_CHARS:
        found.append(f"copy.too-short: {COPY} has {size} characters; it needs at least {MIN_CHARS}")
    if size > MAX_CHARS:
        found.append(f"copy.too-long: {COPY} has {size} characters; at most {MAX_CHARS} allowed")
    if not any(line.startswith("# ") for line in text.splitlines()):
        found.append(f'copy.heading: {COPY} has no headline (a line starting with "# ")')
    if "lorem ipsum" in text.lower():
        found.append(f'copy.placeholder: {COPY} contains placeholder text "lorem ipsum"')
    try:
        price, currency = _offer()
    except ValueError as exc:
        found.append(f"copy.jsonld: {exc}")
        return found
    codes = {*CODES, currency} - {""}
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern in _PRICES:
            for match in pattern.finditer(line):
                code = match.groupdict().get("code")
                if code is not None and code not in codes:
                    continue  # three capitals that are not a currency (e.g. "SKU")
                amount = _amount(match["amount"])
                if amount is not None and amount != price:
                    found.append(
                        f"copy.price: {COPY}:{number}: {match.group(0).strip()!r} disagrees "
                        f"with offers.price {price} in {JSONLD}"
                    )
                if code is not None and currency and code != currency:
                    found.append(
                        f"copy.price: {COPY}:{number}: currency {code} disagrees with "
                        f"offers.priceCurrency {currency} in {JSONLD}"
                    )
    return found


def main() -> int:
    if not COPY.is_file():
        print(f"copy.missing: {COPY} was not written", file=sys.stderr)
        return 1
    found = problems(COPY.read_text(encoding="utf-8"))
    for problem in dict.fromkeys(found):  # once each, in order
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
