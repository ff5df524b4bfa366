"""Inputs must be well-formed data whatever face they come through: the CLI's batch files as
well as the API. Lone surrogates, NUL characters, nesting too deep, strings too long and
numbers that are not finite are refused at the door with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import InputError
from shipyard.jobs import kept_of_refused, read_batch, validate_inputs
from shipyard.jobs._inputs import KEPT_ITEMS, KEPT_STRING, MAX_INPUT_DEPTH, MAX_INPUT_STRING
from support import make_kind


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


BAD = {
    "lone surrogate": ({"sku": "A\ud800"}, "lone surrogate"),
    "surrogate in a key": ({"sku": "A", "\udfff": "x"}, "lone surrogate"),
    "NUL": ({"sku": "A\x00B"}, "NUL"),
    "too deep": ({"sku": "A", "more": _nested(MAX_INPUT_DEPTH)}, "deeper than"),
    "too long": ({"sku": "A" * (MAX_INPUT_STRING + 1)}, "characters long"),
    "infinite": ({"sku": "A", "n": float("inf")}, "not finite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_inputs_are_refused_with_the_reason(tmp_path: Path, case: str) -> None:
    data, reason = BAD[case]
    kind = make_kind(tmp_path, '[{ name = "html" }]')
    with pytest.raises(InputError) as refused:
        validate_inputs(kind, data, where="row 1")
    assert refused.value.message.startswith("row 1: ") and reason in refused.value.message


def test_the_deepest_and_longest_inputs_allowed_pass(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "html" }]')
    data = {"sku": "\U0001f600" * MAX_INPUT_STRING, "more": _nested(MAX_INPUT_DEPTH - 2)}
    assert validate_inputs(kind, data, where="row 1")["sku"] == data["sku"]


def test_a_batch_file_row_that_is_malformed_keeps_only_why(tmp_path: Path) -> None:
    batch = tmp_path / "rows.jsonl"
    lines = [
        json.dumps({"sku": "ok"}),
        '{"sku": "bad \\ud800"}',
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"sku": "deep", "x": _nested(40)}),
    ]
    batch.write_text("\n".join(lines) + "\n")
    rows = list(read_batch(batch))
    assert rows[0].data == {"sku": "ok"}
    assert list(rows[1].data) == ["__error__"] and "surrogate" in rows[1].data["__error__"]
    assert list(rows[2].data) == ["__error__"]
    assert list(rows[3].data) == ["__error__"] and "deeper" in rows[3].data["__error__"]


def test_what_a_refused_row_keeps_is_bounded_and_well_formed() -> None:
    sent = {
        "sku": "A\ud800\x00" + "x" * 50_000,
        "deep": _nested(200),
        "many": list(range(10_000)),
        "n": float("nan"),
        "__error__": "a reader's note",
        "fine": {"price": "1.00"},
    }
    kept = kept_of_refused(sent)
    assert kept["sku"].startswith("A\ufffd\ufffdxxx") and len(kept["sku"]) == KEPT_STRING + 1
    assert len(kept["many"]) == KEPT_ITEMS and kept["n"] is None and "__error__" not in kept
    assert kept["fine"] == {"price": "1.00"}
    json.dumps(kept, allow_nan=False).encode("utf-8")  # any store and any response holds it
    depth, value = 1, kept["deep"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert depth <= MAX_INPUT_DEPTH and "too deep" in value
    assert kept_of_refused({"sku": "plain", "price": "x"}) == {"sku": "plain", "price": "x"}
