"""Inputs at the door: read a batch (CSV, JSONL, JSON), coerce, validate against the schema.

Every problem names where it is (file, row, line), the field and what the schema wants, so a
person can fix the row and resubmit. Nothing downstream ever sees an invalid input.

Before the schema, every row must be well-formed data whatever face it came through (a
batch file, the API): text without lone surrogates or NUL characters (neither is UTF-8
that every store and every response can hold), strings of at most ``MAX_INPUT_STRING``
characters, nesting at most ``MAX_INPUT_DEPTH`` deep and finite numbers. A batch file's
row that is not is refused with its reason and nothing of it is kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema

from shipyard.errors import InputError
from shipyard.jobs._kind import JobKind

__all__ = [
    "MAX_INPUT_DEPTH",
    "MAX_INPUT_STRING",
    "BatchRow",
    "check_well_formed",
    "inputs_hash",
    "kept_of_refused",
    "read_batch",
    "validate_inputs",
]

ARRAY_SEPARATOR = "|"

MAX_INPUT_DEPTH: Final = 16
"""The deepest nesting of lists and objects in one row's inputs (the row itself is 1)."""
MAX_INPUT_STRING: Final = 100_000
"""The longest string, key or value, in one row's inputs, in characters."""

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, kw_only=True)
class BatchRow:
    """One row of a batch file, before validation."""

    where: str
    """Human-readable location, e.g. ``products.csv row 7 (line 8)``."""
    data: dict[str, Any]
    """The row's fields as read (CSV values are strings)."""


def _malformed(data: Any) -> str:
    """Why ``data`` is not well-formed input ('' when it is), walked without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_INPUT_DEPTH:
                return f"nested deeper than {MAX_INPUT_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and (why := _bad_text(key)):
                    return f"a key {why}"
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            if why := _bad_text(value):
                return f"a value {why}"
        elif isinstance(value, float) and not math.isfinite(value):
            return "a number is not finite"
    return ""


def _bad_text(text: str) -> str:
    if len(text) > MAX_INPUT_STRING:
        return f"is {len(text)} characters long, more than {MAX_INPUT_STRING}"
    if found := _UNSTORABLE.search(text):
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
        return f"holds {what} (U+{ord(found.group()):04X})"
    return ""


def check_well_formed(data: dict[str, Any], *, where: str) -> None:
    """InputError unless ``data`` is well-formed input (see the module's docstring)."""
    why = _malformed(data)
    if why:
        raise InputError(
            f"{where}: {why}",
            hint="send well-formed UTF-8 text without NUL characters, strings of at most "
            f"{MAX_INPUT_STRING} characters, nested at most {MAX_INPUT_DEPTH} deep",
        )


KEPT_STRING: Final = 1000
"""Characters kept of each string of a refused row (its record shows what was sent)."""
KEPT_ITEMS: Final = 100
"""Members kept of each object or list of a refused row."""


def kept_of_refused(data: dict[str, Any]) -> dict[str, Any]:
    """What the record of a refused row keeps: its fields (not the reader's ``__`` notes),
    every string cut to ``KEPT_STRING`` characters with text that is not well-formed
    replaced, objects and lists cut to ``KEPT_ITEMS`` members and to ``MAX_INPUT_DEPTH``
    levels, numbers that are not finite as null. A row that fits stays as it came, so any
    record can be listed and shown, whatever was sent."""
    fields = {k: v for k, v in data.items() if not str(k).startswith("__")}
    kept: dict[str, Any] = _kept(fields, 1)
    return kept


def _kept(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        text = _UNSTORABLE.sub("\ufffd", value)
        return text if len(text) <= KEPT_STRING else text[:KEPT_STRING] + "\u2026"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not isinstance(value, dict | list):
        return value
    if depth > MAX_INPUT_DEPTH:
        return "\u2026 (nested too deep)"
    if isinstance(value, list):
        return [_kept(item, depth + 1) for item in value[:KEPT_ITEMS]]
    members = list(value.items())[:KEPT_ITEMS]
    return {_kept(str(k), depth): _kept(v, depth + 1) for k, v in members}


def _row(where: str, data: dict[str, Any]) -> BatchRow:
    """A row read from a file; one that is not well-formed keeps only why."""
    why = _malformed(data)
    return BatchRow(where=where, data={"__error__": why} if why else data)


def inputs_hash(inputs: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the inputs (key order does not matter)."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_batch(path: Path) -> Iterator[BatchRow]:
    """Rows of a ``.csv``, ``.jsonl`` or ``.json`` (a list of objects) file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file", hint="check the path of the batch file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from _read_json(path)
    else:
        raise InputError(
            f"{path}: unknown batch format {suffix!r}", hint="use a .csv, .jsonl or .json file"
        )


def _read_csv(path: Path) -> Iterator[BatchRow]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise InputError(f"{path}: empty CSV", hint="the first line must name the columns")
        for number, row in enumerate(reader, start=1):
            extra = row.pop(None, None)
            where = f"{path.name} row {number} (line {reader.line_num})"
            if extra:
                yield BatchRow(where=where, data={"__extra__": extra})
                continue
            yield _row(where, {k: v for k, v in row.items() if k is not None})


def _read_jsonl(path: Path) -> Iterator[BatchRow]:
    with path.open(encoding="utf-8") as handle:
        number = 0
        for line_num, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            number += 1
            where = f"{path.name} row {number} (line {line_num})"
            try:
                data = json.loads(line)
            except RecursionError:
                yield BatchRow(where=where, data={"__error__": "nested far too deep"})
                continue
            except json.JSONDecodeError as exc:
                yield BatchRow(where=where, data={"__error__": f"not valid JSON: {exc.msg}"})
                continue
            yield (
                _row(where, data)
                if isinstance(data, dict)
                else BatchRow(where=where, data={"__error__": ""})
            )


def _read_json(path: Path) -> Iterator[BatchRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as exc:
        raise InputError(f"{path}: nested far too deep", hint="flatten the rows") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}", hint="fix the file") from exc
    rows = data if isinstance(data, list) else [data]
    for number, row in enumerate(rows, start=1):
        yield _row(f"{path.name} item {number}", row if isinstance(row, dict) else {})


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Turn a CSV string into the type the schema asks for; leave anything else alone."""
    if not isinstance(value, str):
        return value
    kind = schema.get("type")
    text = value.strip()
    try:
        if kind == "number":
            return float(text)
        if kind == "integer":
            return int(text)
    except ValueError:
        return value  # the schema check reports it with the field's name
    if kind == "boolean" and text.lower() in ("true", "false", "yes", "no", "1", "0"):
        return text.lower() in ("true", "yes", "1")
    if kind == "array":
        items = schema.get("items", {})
        return [
            _coerce(part.strip(), items) for part in text.split(ARRAY_SEPARATOR) if part.strip()
        ]
    return value


def validate_inputs(kind: JobKind, data: dict[str, Any], *, where: str) -> dict[str, Any]:
    """The inputs coerced to the schema's types; InputError naming each bad field otherwise."""
    if "__error__" in data:
        raise InputError(
            f"{where}: {data['__error__'] or 'each row must be a JSON object'}",
            hint="fix the row and submit it again",
        )
    if "__extra__" in data:
        raise InputError(
            f"{where}: more values than columns ({data['__extra__']!r} left over)",
            hint="quote values that contain commas",
        )
    check_well_formed(data, where=where)
    properties: dict[str, Any] = kind.input_schema.get("properties", {})
    coerced: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str) and value.strip() == "":
            continue  # an empty CSV cell is a missing value, not an empty string
        coerced[key] = _coerce(value, properties.get(key, {}))
    validator = jsonschema.Draft202012Validator(kind.input_schema)
    problems = []
    fields = []
    for error in sorted(validator.iter_errors(coerced), key=lambda e: list(e.absolute_path)):
        if error.validator == "required":
            missing = [f for f in error.validator_value if f not in coerced]
            for name in missing:
                fields.append(name)
                problems.append(f"field {name!r}: missing (required)")
            continue
        if error.validator == "additionalProperties":
            field_name = "(row)"
        else:
            field_name = ".".join(str(p) for p in error.absolute_path) or "(row)"
        fields.append(field_name)
        problems.append(f"field {field_name!r}: {error.message}")
    if problems:
        raise InputError(
            f"{where}: " + "; ".join(problems),
            hint=f"fix the row to fit the {kind.name} input schema and submit it again",
            details={"where": where, "fields": fields, "problems": problems},
        )
    return coerced
