"""The html check and script: a page that reaches customers may not run script of its own
(inline <script>, event handlers, javascript: URLs, srcdoc frames) unless its job kind says
``inline_scripts = true``; data blocks (JSON-LD) are not script. The example's job kinds pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.test_checks import GOOD_PAGE, check
from shipyard.generate import GenerationRequest
from shipyard.generate.providers.template import TemplateProvider
from shipyard.jobs import JobKind, load_job_kind, validate_inputs
from support import PRODUCT, REPO, finding, line_of, make_kind, rules


def _customer_kind(root: Path, extra: str = "", check_options: str = "") -> JobKind:
    """A job kind with ``publish = true`` whose one check is html."""
    kind = make_kind(root, f'[{{ name = "html"{check_options} }}]')
    job = kind.folder / "job.toml"
    job.write_text("publish = true\n" + extra + job.read_text())
    return load_job_kind(kind.folder, domain="d")


SCRIPTED = {
    "inline": ("<script>document.title = 'x'</script>", "html.inline-script"),
    "module": ('<script type="module">import "./a.js"</script>', "html.inline-script"),
    "own file": ('<script src="/app.js"></script>', "html.inline-script"),
    "handler": ('<img src="/a.png" alt="a" onerror="alert(1)">', "html.script-attribute"),
    "body handler": ('<div onclick="go()">x</div>', "html.script-attribute"),
    "javascript url": ('<a href=" JaVa\tScRiPt:alert(1)">x</a>', "html.script-attribute"),
    "form action": ('<form action="javascript:void(0)"></form>', "html.script-attribute"),
    "srcdoc": ('<iframe title="t" srcdoc="&lt;script&gt;1&lt;/script&gt;"></iframe>', None),
}


@pytest.mark.parametrize("case", sorted(SCRIPTED))
def test_a_customer_page_that_would_run_script_fails(tmp_path: Path, case: str) -> None:
    snippet, rule = SCRIPTED[case]
    page = GOOD_PAGE.replace("</body>", f"{snippet}\n</body>")

    report = check(_customer_kind(tmp_path), {"index.html": page})

    assert not report.passed
    found = finding(report, rule or "html.script-attribute")
    assert found.line == line_of(page, snippet)
    assert "inline_scripts = true" in found.message


def test_json_ld_and_other_data_blocks_are_not_script(tmp_path: Path) -> None:
    page = GOOD_PAGE.replace(
        "</body>", '<script type="text/template"><b>{{ x }}</b></script>\n</body>'
    )

    report = check(_customer_kind(tmp_path), {"index.html": page})

    assert report.passed, report.findings


def test_the_job_kind_may_allow_script(tmp_path: Path) -> None:
    page = GOOD_PAGE.replace("</body>", '<button onclick="go()">Go</button>\n</body>')
    kind = _customer_kind(tmp_path, extra="inline_scripts = true\n")

    assert kind.inline_scripts
    assert check(kind, {"index.html": page}).passed


def test_the_check_entry_may_set_it_for_itself(tmp_path: Path) -> None:
    page = GOOD_PAGE.replace("</body>", "<script>1</script>\n</body>")
    kind = _customer_kind(tmp_path, check_options=", inline_scripts = true")

    assert check(kind, {"index.html": page}).passed


def test_work_that_does_not_reach_customers_may_run_script_by_default(tmp_path: Path) -> None:
    page = GOOD_PAGE.replace("</body>", "<script>1</script>\n</body>")
    kind = make_kind(tmp_path, '[{ name = "html" }]')  # publish = false

    assert kind.inline_scripts
    assert check(kind, {"index.html": page}).passed


def test_an_external_script_is_its_own_finding_either_way(tmp_path: Path) -> None:
    page = GOOD_PAGE.replace("</body>", '<script src="https://cdn.example/x.js"></script></body>')

    report = check(_customer_kind(tmp_path), {"index.html": page})

    assert rules(report) == ["html.external-script"]


def test_the_examples_customer_pages_deny_script_and_still_pass() -> None:
    folder = REPO / "examples" / "ecommerce" / "jobs" / "landing-page"
    kind = load_job_kind(folder, domain="storefront")
    assert kind.publish and not kind.inline_scripts
    [html] = [c for c in kind.checks if c.name == "html"]
    assert html.options["inline_scripts"] is False
    inputs = validate_inputs(kind, PRODUCT, where="test")
    request = GenerationRequest(task_id="t", kind=kind, inputs=inputs, attempt=1, prompt="")
    files = TemplateProvider().generate(request).files
    report = check(kind, files)
    assert report.passed, report.findings
