from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import ConfigError, InputError
from shipyard.jobs import JobKind, inputs_hash, load_job_kind, read_batch, validate_inputs

JOB_TOML = """\
name = "product-page"
description = "One page per product"
risk = "low"
input_key = "sku"
outputs = { "index.html" = "page.html.j2" }
checks = [{ name = "html" }, { name = "jsonld", type = "Product" }]
release = { target = "site", path = "products/{{ sku }}" }
"""

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sku": {"type": "string"},
        "price": {"type": "number", "minimum": 0},
        "stock": {"type": "integer"},
        "on_sale": {"type": "boolean"},
        "features": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["sku", "price"],
    "additionalProperties": False,
}


def make_kind_folder(root: Path) -> Path:
    folder = root / "product-page"
    folder.mkdir()
    (folder / "job.toml").write_text(JOB_TOML, encoding="utf-8")
    (folder / "input.schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    (folder / "prompt.md.j2").write_text("Write a page for {{ sku }}.\n", encoding="utf-8")
    (folder / "page.html.j2").write_text("<h1>{{ sku }}</h1>\n", encoding="utf-8")
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_kind_folder(tmp_path)


@pytest.fixture
def kind(folder: Path) -> JobKind:
    return load_job_kind(folder, domain="d")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def validated(kind: JobKind, path: Path) -> list[dict[str, Any] | InputError]:
    """Each row of the batch: its validated inputs, or the InputError it raised."""
    out: list[dict[str, Any] | InputError] = []
    for row in read_batch(path):
        try:
            out.append(validate_inputs(kind, row.data, where=row.where))
        except InputError as exc:
            out.append(exc)
    return out


def only_error(results: list[dict[str, Any] | InputError]) -> InputError:
    errors = [r for r in results if isinstance(r, InputError)]
    assert len(errors) == 1, results
    return errors[0]


# -- loading a job kind -----------------------------------------------------------------------


def test_load_job_kind_reads_every_part(kind: JobKind, folder: Path) -> None:
    assert kind.name == "product-page"
    assert kind.domain == "d"
    assert kind.folder == folder.resolve()
    assert kind.input_key == "sku"
    assert kind.input_schema == SCHEMA
    assert kind.prompt_template == "Write a page for {{ sku }}.\n"
    assert kind.outputs == {"index.html": "<h1>{{ sku }}</h1>\n"}
    assert [c.name for c in kind.checks] == ["html", "jsonld"]
    assert kind.checks[1].options == {"type": "Product"}
    assert kind.release is not None
    assert kind.release.target == "site"
    assert kind.release.path == "products/{{ sku }}"


def test_template_hash_changes_with_the_templates(folder: Path) -> None:
    before = load_job_kind(folder, domain="d").template_hash
    assert load_job_kind(folder, domain="d").template_hash == before

    write(folder / "page.html.j2", "<h2>{{ sku }}</h2>\n")

    assert load_job_kind(folder, domain="d").template_hash != before


def test_missing_job_toml_names_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()

    with pytest.raises(ConfigError) as caught:
        load_job_kind(empty, domain="d")

    assert str(empty / "job.toml") in caught.value.message


def test_unknown_key_in_job_toml_names_file_and_key(folder: Path) -> None:
    write(folder / "job.toml", JOB_TOML + "retries = 3\n")

    with pytest.raises(ConfigError) as caught:
        load_job_kind(folder, domain="d")

    assert str(folder / "job.toml") in caught.value.message
    assert "'retries'" in caught.value.message
    assert "max_attempts" in caught.value.hint


def test_input_key_must_be_a_schema_property(folder: Path) -> None:
    write(folder / "job.toml", JOB_TOML.replace('input_key = "sku"', 'input_key = "ean"'))

    with pytest.raises(ConfigError) as caught:
        load_job_kind(folder, domain="d")

    assert str(folder / "job.toml") in caught.value.message
    assert "input_key" in caught.value.message
    assert "'ean'" in caught.value.message
    assert "sku" in caught.value.hint


@pytest.mark.parametrize(
    "schema_text",
    ['{"type": 12, "properties": {"sku": {}}}', '{"type": "object", '],
    ids=["not-a-schema", "not-json"],
)
def test_invalid_json_schema_names_the_schema_file(folder: Path, schema_text: str) -> None:
    write(folder / "input.schema.json", schema_text)

    with pytest.raises(ConfigError) as caught:
        load_job_kind(folder, domain="d")

    assert str(folder / "input.schema.json") in caught.value.message
    assert "not a valid JSON Schema" in caught.value.message


@pytest.mark.parametrize(
    ("missing", "what"),
    [("page.html.j2", "code template"), ("prompt.md.j2", "prompt template")],
)
def test_missing_template_names_job_file_and_template(
    folder: Path, missing: str, what: str
) -> None:
    (folder / missing).unlink()

    with pytest.raises(ConfigError) as caught:
        load_job_kind(folder, domain="d")

    assert str(folder / "job.toml") in caught.value.message
    assert f"{what} {missing!r}" in caught.value.message
    assert str(folder / missing) in caught.value.hint


# -- reading and validating a batch -----------------------------------------------------------


def test_csv_values_are_coerced_to_schema_types(kind: JobKind, tmp_path: Path) -> None:
    path = write(
        tmp_path / "products.csv",
        "sku,price,stock,on_sale,features\n"
        "SKU-1,16.50,3,yes,a|b|c\n"
        "SKU-2,4,0,false, roasted | ground |\n",
    )

    first, second = validated(kind, path)

    assert first == {
        "sku": "SKU-1",
        "price": 16.5,
        "stock": 3,
        "on_sale": True,
        "features": ["a", "b", "c"],
    }
    assert second == {
        "sku": "SKU-2",
        "price": 4.0,
        "stock": 0,
        "on_sale": False,
        "features": ["roasted", "ground"],
    }
    assert isinstance(first["stock"], int)


def test_csv_rows_say_where_they_are(tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,price\nA,1\nB,2\n")

    assert [row.where for row in read_batch(path)] == [
        "products.csv row 1 (line 2)",
        "products.csv row 2 (line 3)",
    ]


def test_empty_cell_counts_as_missing_and_names_row_and_line(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,price,stock\nSKU-1,2.5,1\nSKU-2,,1\n")

    results = validated(kind, path)
    error = only_error(results)

    assert results[0] == {"sku": "SKU-1", "price": 2.5, "stock": 1}
    assert "products.csv row 2 (line 3)" in error.message
    assert "field 'price': missing (required)" in error.message
    assert error.details["fields"] == ["price"]


def test_empty_optional_cell_is_left_out(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,price,stock,features\nSKU-1,1,,\n")

    assert validated(kind, path) == [{"sku": "SKU-1", "price": 1.0}]


def test_value_below_minimum_names_the_field(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,price\nSKU-1,-3\n")

    error = only_error(validated(kind, path))

    assert "products.csv row 1 (line 2)" in error.message
    assert "field 'price'" in error.message
    assert "minimum" in error.message
    assert error.details["fields"] == ["price"]


def test_uncoercible_number_names_the_field(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,price,stock\nSKU-1,cheap,many\n")

    error = only_error(validated(kind, path))

    assert "field 'price'" in error.message
    assert "field 'stock'" in error.message
    assert sorted(error.details["fields"]) == ["price", "stock"]


def test_every_problem_of_a_row_is_reported_at_once(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,stock\n,2\n")

    error = only_error(validated(kind, path))

    assert "field 'sku': missing (required)" in error.message
    assert "field 'price': missing (required)" in error.message


def test_row_with_more_values_than_columns_is_refused(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,price\nSKU-1,1\nSKU-2,2,oops\n")

    results = validated(kind, path)
    error = only_error(results)

    assert results[0] == {"sku": "SKU-1", "price": 1.0}
    assert "products.csv row 2 (line 3)" in error.message
    assert "more values than columns" in error.message
    assert "oops" in error.message


def test_jsonl_broken_line_names_that_line(kind: JobKind, tmp_path: Path) -> None:
    path = write(
        tmp_path / "rows.jsonl",
        '{"sku": "SKU-1", "price": 1}\n'
        "\n"
        '{"sku": "SKU-2", price: 2}\n'
        '{"sku": "SKU-3", "price": 3}\n',
    )

    results = validated(kind, path)
    error = only_error(results)

    assert results[0] == {"sku": "SKU-1", "price": 1}
    assert results[2] == {"sku": "SKU-3", "price": 3}
    # The blank line is skipped, so the broken one is row 2 but line 3 of the file.
    assert "rows.jsonl row 2 (line 3)" in error.message
    assert "not valid JSON" in error.message


def test_jsonl_row_that_is_not_an_object_is_refused(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "rows.jsonl", '["SKU-1", 1]\n')

    error = only_error(validated(kind, path))

    assert "rows.jsonl row 1 (line 1)" in error.message
    assert "JSON object" in error.message


def test_json_batch_items_are_validated_and_named(kind: JobKind, tmp_path: Path) -> None:
    path = write(
        tmp_path / "batch.json",
        json.dumps([{"sku": "SKU-1", "price": 2}, {"sku": "SKU-2", "price": -1}]),
    )

    results = validated(kind, path)

    assert results[0] == {"sku": "SKU-1", "price": 2}
    error = results[1]
    assert isinstance(error, InputError)
    assert "batch.json item 2" in error.message
    assert "field 'price'" in error.message


def test_unknown_column_is_refused(kind: JobKind, tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv", "sku,price,colour\nSKU-1,1,red\n")

    error = only_error(validated(kind, path))

    assert "colour" in error.message


def test_unknown_batch_suffix_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "products.xlsx", "sku,price\nSKU-1,1\n")

    with pytest.raises(InputError) as caught:
        list(read_batch(path))

    assert str(path) in caught.value.message
    assert "'.xlsx'" in caught.value.message


def test_missing_batch_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        list(read_batch(tmp_path / "nope.csv"))

    assert "nope.csv" in caught.value.message


def test_inputs_hash_ignores_key_order() -> None:
    one = {"sku": "SKU-1", "price": 16.5, "features": ["a", "b"], "meta": {"x": 1, "y": 2}}
    two = {"meta": {"y": 2, "x": 1}, "features": ["a", "b"], "price": 16.5, "sku": "SKU-1"}

    assert inputs_hash(one) == inputs_hash(two)
    assert len(inputs_hash(one)) == 64


def test_inputs_hash_changes_with_any_value() -> None:
    base = {"sku": "SKU-1", "price": 16.5, "features": ["a", "b"]}

    assert inputs_hash(base) != inputs_hash({**base, "price": 16.6})
    assert inputs_hash(base) != inputs_hash({**base, "features": ["b", "a"]})
