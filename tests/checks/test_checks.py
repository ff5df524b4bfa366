from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.checks import BUILTIN_CHECKS, run_checks, safe_relative_path
from shipyard.errors import InputError
from shipyard.jobs import JobKind
from shipyard.model import CheckReport
from shipyard.sandbox import Limits, ProcessBackend
from support import finding, line_of, make_kind, rules

LIMITS = Limits(timeout_seconds=30)

PRODUCT_SCHEMA = {
    "type": "object",
    "required": ["@type", "name", "offers"],
    "properties": {"name": {"type": "string", "minLength": 1}},
}

GOOD_PAGE_LINES = [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    "<title>Enamel Camp Mug</title>",
    '<script type="application/ld+json">'
    '{"@context": "https://schema.org", "@type": "Product", "name": "Enamel Camp Mug",'
    ' "offers": {"@type": "Offer", "price": "14.00", "priceCurrency": "USD"}}'
    "</script>",
    "</head>",
    "<body>",
    "<h1>Enamel Camp Mug</h1>",
    '<img src="/images/mug.jpg" alt="A speckled blue enamel mug">',
    "</body>",
    "</html>",
]
GOOD_PAGE = "\n".join(GOOD_PAGE_LINES) + "\n"

TEST_CALC = """\
from calc import add


def test_add_small_numbers():
    assert add(2, 3) == 5
"""


def check(kind: JobKind, files: dict[str, str]) -> CheckReport:
    return run_checks(kind, files, backend=ProcessBackend(), limits=LIMITS, registry=BUILTIN_CHECKS)


# -- html -------------------------------------------------------------------------------------


@pytest.fixture
def html_kind(tmp_path: Path) -> JobKind:
    return make_kind(tmp_path, '[{ name = "html" }]')


def test_html_check_passes_a_good_page(html_kind: JobKind) -> None:
    report = check(html_kind, {"index.html": GOOD_PAGE})

    assert report.findings == []
    assert report.passed
    assert [r.check for r in report.results] == ["html"]
    assert report.results[0].passed


def test_html_check_reports_img_without_alt(html_kind: JobKind) -> None:
    page = GOOD_PAGE.replace(' alt="A speckled blue enamel mug"', "")

    report = check(html_kind, {"index.html": page})

    found = finding(report, "html.img-alt")
    assert not report.passed
    assert found.file == "index.html"
    assert found.line == line_of(page, "<img")
    assert "/images/mug.jpg" in found.message


def test_html_check_reports_external_script(html_kind: JobKind) -> None:
    page = GOOD_PAGE.replace(
        "</body>", '<script src="https://cdn.example.com/x.js"></script>\n</body>'
    )

    report = check(html_kind, {"index.html": page})

    found = finding(report, "html.external-script")
    assert not report.passed
    assert found.file == "index.html"
    assert found.line == line_of(page, "cdn.example.com")
    assert "https://cdn.example.com/x.js" in found.message


def test_html_check_allows_listed_script_origins(tmp_path: Path) -> None:
    kind = make_kind(
        tmp_path, '[{ name = "html", allowed_script_origins = ["https://cdn.example.com/"] }]'
    )
    page = GOOD_PAGE.replace(
        "</body>", '<script src="https://cdn.example.com/x.js"></script>\n</body>'
    )

    report = check(kind, {"index.html": page})

    assert report.passed, report.findings


def test_html_check_reports_missing_title(html_kind: JobKind) -> None:
    page = GOOD_PAGE.replace("<title>Enamel Camp Mug</title>", "")

    report = check(html_kind, {"index.html": page})

    found = finding(report, "html.title")
    assert not report.passed
    assert found.file == "index.html"


def test_html_check_fails_when_there_is_no_page(html_kind: JobKind) -> None:
    report = check(html_kind, {"notes.txt": "no html here"})

    assert not report.passed
    assert rules(report) == ["html.missing"]


# -- jsonld -----------------------------------------------------------------------------------


@pytest.fixture
def jsonld_kind(tmp_path: Path) -> JobKind:
    return make_kind(
        tmp_path,
        '[{ name = "jsonld", type = "Product", schema = "product.schema.json" }]',
        {"product.schema.json": json.dumps(PRODUCT_SCHEMA)},
    )


def test_jsonld_check_passes_a_valid_product(jsonld_kind: JobKind) -> None:
    report = check(jsonld_kind, {"index.html": GOOD_PAGE})

    assert report.passed, report.findings


def test_jsonld_check_reports_missing_product(jsonld_kind: JobKind) -> None:
    page = GOOD_PAGE.replace('"@type": "Product"', '"@type": "Thing"')

    report = check(jsonld_kind, {"index.html": page})

    assert not report.passed
    assert rules(report) == ["jsonld.missing"]
    assert "'Product'" in report.findings[0].message


def test_jsonld_check_reports_field_the_schema_requires(jsonld_kind: JobKind) -> None:
    page = GOOD_PAGE.replace(
        ', "offers": {"@type": "Offer", "price": "14.00", "priceCurrency": "USD"}', ""
    )

    report = check(jsonld_kind, {"index.html": page})

    found = finding(report, "jsonld.schema")
    assert not report.passed
    assert "'offers'" in found.message
    assert found.file == "index.html"
    assert found.line == line_of(page, "application/ld+json")


# -- compile ----------------------------------------------------------------------------------


def test_compile_check_reports_syntax_error_with_line(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "compile" }]')
    code = "def add(a, b):\n    total = a + b\n    return total +\n"

    report = check(kind, {"calc.py": code, "ok.py": "x = 1\n"})

    found = finding(report, "compile.syntax")
    assert not report.passed
    assert found.file == "calc.py"
    assert found.line == 3


def test_compile_check_ignores_the_job_folder(tmp_path: Path) -> None:
    # A deliberately broken helper in the job kind's folder is not the generated code.
    kind = make_kind(tmp_path, '[{ name = "compile" }]', {"fixtures/broken.py": "def (:\n"})

    report = check(kind, {"calc.py": "def add(a, b):\n    return a + b\n"})

    assert report.passed, report.findings


# -- pytest -----------------------------------------------------------------------------------


@pytest.fixture
def pytest_kind(tmp_path: Path) -> JobKind:
    return make_kind(tmp_path, '[{ name = "pytest" }]', {"tests/test_calc.py": TEST_CALC})


def test_pytest_check_passes_good_code(pytest_kind: JobKind) -> None:
    report = check(pytest_kind, {"calc.py": "def add(a, b):\n    return a + b\n"})

    assert report.passed, report.findings
    assert report.findings == []


def test_pytest_check_reports_the_failed_test(pytest_kind: JobKind) -> None:
    report = check(pytest_kind, {"calc.py": "def add(a, b):\n    return a - b\n"})

    found = finding(report, "pytest.failed")
    assert not report.passed
    assert "test_add_small_numbers" in found.message
    assert found.file == "_job/tests/test_calc.py"
    assert found.line == line_of(TEST_CALC, "assert add(2, 3) == 5")


def test_pytest_failure_message_contains_the_assertion(pytest_kind: JobKind) -> None:
    report = check(pytest_kind, {"calc.py": "def add(a, b):\n    return a - b\n"})

    found = finding(report, "pytest.failed")
    assert "test_add_small_numbers" in found.message
    assert "assert -1 == 5" in found.message


# -- command ----------------------------------------------------------------------------------


def test_command_check_passes_on_exit_zero(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "command", run = ["python", "-c", "import calc"] }]')

    report = check(kind, {"calc.py": "VALUE = 1\n"})

    assert report.passed, report.findings


def test_command_check_reports_nonzero_exit(tmp_path: Path) -> None:
    script = "import sys; print('lint: 2 problems'); sys.exit(2)"
    kind = make_kind(tmp_path, f'[{{ name = "command", run = ["python", "-c", {script!r}] }}]')

    report = check(kind, {"calc.py": "VALUE = 1\n"})

    found = finding(report, "command.exit")
    assert not report.passed
    assert "status 2" in found.message
    assert "lint: 2 problems" in found.message


def test_command_check_without_run_list_explains_itself(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "command", run = "make lint" }]')

    report = check(kind, {"calc.py": "VALUE = 1\n"})

    assert not report.passed
    assert rules(report) == ["command.config"]


def test_check_stopped_by_a_limit_is_a_failed_check(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "command", run = ["python", "-c", "while True: pass"] }]')

    report = run_checks(
        kind,
        {"calc.py": "VALUE = 1\n"},
        backend=ProcessBackend(),
        limits=Limits(timeout_seconds=1),
        registry=BUILTIN_CHECKS,
    )

    assert not report.passed
    assert rules(report) == ["sandbox.limit"]
    assert report.results[0].detail == "killed by timeout"


# -- the pipeline -----------------------------------------------------------------------------


def test_job_toml_decides_which_checks_run_in_order(tmp_path: Path) -> None:
    kind = make_kind(
        tmp_path,
        '[{ name = "compile" }, { name = "html" }, { name = "command", run = ["true"] }]',
    )

    report = check(kind, {"index.html": GOOD_PAGE, "calc.py": "x = (\n"})

    assert [r.check for r in report.results] == ["compile", "html", "command"]
    assert [r.passed for r in report.results] == [False, True, True]
    assert not report.passed


def test_report_notes_that_process_backend_is_not_isolated(html_kind: JobKind) -> None:
    report = check(html_kind, {"index.html": GOOD_PAGE})

    assert report.sandbox == "process"
    assert any("'process'" in note and "not isolated" in note for note in report.notes)


def test_generated_file_cannot_replace_the_job_folder(pytest_kind: JobKind) -> None:
    with pytest.raises(InputError):
        check(pytest_kind, {"_job/tests/test_calc.py": "def test_nothing():\n    pass\n"})


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "_job/x", "pages/../../x", ""])
def test_safe_relative_path_refuses_escaping_names(name: str) -> None:
    with pytest.raises(InputError) as caught:
        safe_relative_path(name)

    assert repr(name) in caught.value.message


def test_safe_relative_path_accepts_nested_names() -> None:
    assert str(safe_relative_path("pages/products/index.html")) == "pages/products/index.html"
