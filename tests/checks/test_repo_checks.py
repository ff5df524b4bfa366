"""Verifying a repository change for real: git repositories made in tmp_path, the change written
into a working copy, its tests, linters and Shipyard's checks run in the sandbox (the process
backend, and bubblewrap where it works), the import guard against a loopback index."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from repos.test_environment import INSTALL, wheel
from repos.test_imports import Index
from repos_support import copy_of, make_repository, write
from shipyard.checks import ChangeVerification, added_lines, verify_change
from shipyard.checks._repo_tools import (
    is_fix_goal,
    is_mypy,
    is_test_path,
    mypy_findings,
    read_junit,
    with_junit,
    with_ruff_json,
)
from shipyard.config import RepoSettings
from shipyard.model import CheckResult, Finding
from shipyard.repos import (
    Environment,
    PackageIndex,
    WorkingCopy,
    changes,
    prepare_environment,
)
from shipyard.sandbox import BwrapBackend, Limits, ProcessBackend, SandboxBackend, bwrap_available

LIMITS = Limits(timeout_seconds=120, cpu_seconds=120, memory_mb=2048, max_output_bytes=2_000_000)
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # built from parts: this file holds no secret

CART = '''\
"""Prices of a cart."""


def total(prices):
    return sum(prices)


def count(items):
    return len(items)
'''

TESTS = """\
from shop.cart import count, total


def test_total():
    assert total([1, 2]) == 3


def test_count():
    assert count([1, 2]) == 2


def test_empty():
    assert total([]) == 0
"""

REPO = {
    "pyproject.toml": "[project]\nname = 'shop'\nversion = '1'\ndependencies = ['requests']\n",
    "src/shop/__init__.py": "",
    "src/shop/cart.py": CART,
    "tests/test_cart.py": TESTS,
}

DISCOUNT = (
    CART
    + '''

def discounted(prices, percent):
    """The total after a discount of ``percent``."""
    return total(prices) * (100 - percent) / 100
'''
)


BWRAP = pytest.param(
    "bwrap",
    marks=pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available"),
)


@pytest.fixture(scope="module")
def bwrap() -> Iterator[SandboxBackend]:
    sandbox = BwrapBackend(pool_size=1)
    yield sandbox
    sandbox.close()


@pytest.fixture(params=["process", BWRAP])
def backend(request: pytest.FixtureRequest) -> SandboxBackend:
    """Each test that takes it runs on both backends."""
    if request.param == "bwrap":
        return request.getfixturevalue("bwrap")  # type: ignore[no-any-return]
    return ProcessBackend()


@pytest.fixture(scope="module")
def index() -> Iterator[Index]:
    served = Index()
    yield served
    served.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "shipyard.toml").write_text("[project]\nname = 'test'\n")
    return tmp_path


def working_copy(project: Path, files: dict[str, str | bytes] | None = None) -> WorkingCopy:
    return copy_of(project, make_repository(project / "repo", files or REPO))


def verify(
    copy: WorkingCopy,
    index: Index,
    *,
    backend: SandboxBackend | None = None,
    goal: str = "Add a discounted total",
    limits: Limits = LIMITS,
    environment: Environment | None = None,
    **settings: Any,
) -> ChangeVerification:
    config = RepoSettings.model_validate({"path": "repo", **settings})
    return verify_change(
        copy,
        changes(copy),
        config,
        goal=goal,
        environment=environment or Environment(),
        backend=backend or ProcessBackend(),
        limits=limits,
        index=PackageIndex(index.url),
    )


def result(verification: ChangeVerification, name: str) -> CheckResult:
    found = [r for r in verification.report.results if r.check == name]
    assert found, f"no {name!r} result in {[r.check for r in verification.report.results]}"
    return found[0]


def rules(item: CheckResult) -> list[str]:
    return [f.rule for f in item.findings]


def errors(item: CheckResult) -> list[Finding]:
    return [f for f in item.findings if f.severity == "error"]


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


# -- whole verifications ------------------------------------------------------------------------


def test_a_passing_change_passes_every_check_with_its_counts(
    project: Path, index: Index, backend: SandboxBackend
) -> None:
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": DISCOUNT})
    verification = verify(copy, index, backend=backend)
    report = verification.report
    names = ["change", "test", "compile", "ruff", "bandit", "secrets", "imports"]
    assert [r.check for r in report.results] == names
    assert report.passed, [(r.check, r.findings, r.detail) for r in report.results if not r.passed]
    passed = "3 of 3 tests passed (0 failed, 0 errors, 0 skipped)"
    assert result(verification, "test").detail == passed
    assert dict(verification.facts) == {
        "tests_passed": 3,
        "tests_failed": 0,
        "tests_errors": 0,
        "tests_skipped": 0,
        "new_dependencies": [],
        "checks": names,
    }
    assert report.sandbox == backend.name
    assert any("not isolated" in note for note in report.notes) is (not backend.isolated)


def test_a_change_that_breaks_a_test_fails_at_the_tests_line(
    project: Path, index: Index, backend: SandboxBackend
) -> None:
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": CART.replace("sum(prices)", "sum(prices) + 1")})
    verification = verify(copy, index, backend=backend)
    test = result(verification, "test")
    assert not test.passed and not verification.report.passed
    failed = [f for f in test.findings if f.rule == "pytest.failed"]
    assert {f.message.split(":")[0] for f in failed} == {"test_total", "test_empty"}
    by_name = {f.message.split(":")[0]: f for f in failed}
    assert by_name["test_total"].file == "tests/test_cart.py"
    assert by_name["test_total"].line == line_of(TESTS, "assert total([1, 2]) == 3")
    assert "assert 4 == 3" in by_name["test_total"].message
    facts = verification.facts
    assert (facts["tests_passed"], facts["tests_failed"], facts["tests_errors"]) == (1, 2, 0)
    assert result(verification, "compile").passed and result(verification, "ruff").passed


def test_tests_that_collect_nothing_are_not_a_pass(project: Path, index: Index) -> None:
    files = {k: v for k, v in REPO.items() if not k.startswith("tests/")}
    copy = working_copy(project, files)
    write(copy.path, {"src/shop/cart.py": DISCOUNT})
    verification = verify(copy, index)
    test = result(verification, "test")
    assert not test.passed and rules(test) == ["repo.no-tests"]
    assert verification.facts["tests_passed"] == 0
    assert result(verification, "compile").passed  # the other checks still ran


def test_an_empty_change_is_an_error_and_nothing_else_runs(project: Path, index: Index) -> None:
    copy = working_copy(project)
    verification = verify(copy, index)
    assert [r.check for r in verification.report.results] == ["change"]
    change = result(verification, "change")
    assert not change.passed and rules(change) == ["repo.empty-change"]
    assert "nothing else was checked" in change.detail
    assert verification.facts["tests_passed"] == -1 and verification.facts["checks"] == ["change"]


def test_a_refused_change_is_reported_and_not_run(project: Path, index: Index) -> None:
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": DISCOUNT})
    (copy.path / "src" / "shop" / "passwd").symlink_to("/etc/passwd")
    verification = verify(copy, index)
    change = result(verification, "change")
    assert "repo.symlink-outside" in rules(change) and not change.passed
    assert [r.check for r in verification.report.results] == ["change"]


def test_only_tests_changed_for_a_fix_hides_the_bug(project: Path, index: Index) -> None:
    copy = working_copy(project)
    write(copy.path, {"tests/test_cart.py": TESTS.replace("== 3", "== 3 or True")})
    fix = verify(copy, index, goal="Fix the crash in total() when prices are missing")
    change = result(fix, "change")
    assert not change.passed and rules(change) == ["repo.only-tests"]
    assert change.findings[0].file == "tests/test_cart.py"
    assert result(fix, "test").passed  # the tests pass: that is the point of the rule
    more = verify(copy, index, goal="Make the total test easier to read")
    assert result(more, "change").passed and more.report.passed


def test_a_lint_error_on_a_changed_line_fails_the_repositorys_linter(
    project: Path, index: Index
) -> None:
    old = CART.replace('"""Prices of a cart."""\n', '"""Prices of a cart."""\nimport os\n')
    copy = working_copy(project, {**REPO, "src/shop/cart.py": old})
    new = old + "\n\ndef tax(amount):\n    unused = 1\n    return amount * 0.2\n"
    write(copy.path, {"src/shop/cart.py": new})
    verification = verify(copy, index, lint=["ruff", "check"])
    lint = result(verification, "lint")
    assert not lint.passed
    assert [(f.rule, f.file, f.line) for f in lint.findings] == [
        ("lint.F841", "src/shop/cart.py", line_of(new, "unused = 1"))
    ]
    assert lint.detail == "1 finding(s) on lines the change did not touch"  # the old import os
    own = result(verification, "ruff")  # Shipyard's own ruff: an error there, a warning at os
    assert [(f.rule, f.line, f.severity) for f in own.findings] == [
        ("ruff.F401", line_of(new, "import os"), "warning"),
        ("ruff.F841", line_of(new, "unused = 1"), "error"),
    ]
    assert [r.check for r in verification.report.results][:3] == ["change", "test", "lint"]


def test_a_type_error_in_a_changed_file_fails_the_type_checker(project: Path, index: Index) -> None:
    other = 'def name() -> int:\n    return "x"\n'
    copy = working_copy(project, {**REPO, "src/shop/other.py": other})
    new = DISCOUNT + "\n\ndef label(n: int) -> str:\n    return n\n"
    write(copy.path, {"src/shop/cart.py": new})
    verification = verify(copy, index, typecheck=["python", "-m", "mypy", "src"])
    typecheck = result(verification, "typecheck")
    assert not typecheck.passed
    assert [(f.file, f.line, f.severity) for f in typecheck.findings] == [
        ("src/shop/cart.py", line_of(new, "return n"), "error"),
        ("src/shop/other.py", 2, "warning"),
    ]
    assert typecheck.findings[0].rule == "typecheck.return-value"


def test_an_added_secret_is_found_on_its_line(project: Path, index: Index) -> None:
    copy = working_copy(project)
    config = f'BUCKET = "shop"\nACCESS_KEY = "{AWS_KEY}"\n'
    write(copy.path, {"src/shop/cart.py": DISCOUNT, "deploy/settings.ini": config})
    verification = verify(copy, index)
    secrets = result(verification, "secrets")
    assert not secrets.passed
    assert {(f.file, f.line) for f in errors(secrets)} == {("deploy/settings.ini", 2)}
    assert AWS_KEY not in str(secrets.to_dict())


def test_bandit_judges_only_the_lines_the_change_added(project: Path, index: Index) -> None:
    old = "import subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n"
    copy = working_copy(project, {**REPO, "src/shop/jobs.py": old})
    new = old + "\n\ndef again(cmd):\n    subprocess.call(cmd, shell=True)\n"
    write(copy.path, {"src/shop/jobs.py": new})
    bandit = result(verify(copy, index), "bandit")
    assert not bandit.passed
    assert [(f.rule, f.line) for f in errors(bandit)] == [("bandit.B602", 9)]
    assert bandit.detail == "2 issue(s) on lines the change did not add"  # B404, the old B602


def test_asserts_count_against_code_but_not_against_tests(project: Path, index: Index) -> None:
    copy = working_copy(project)
    code = DISCOUNT + "\n\ndef checked(prices):\n    assert prices\n    return total(prices)\n"
    added_test = TESTS + (
        "\n\ndef test_discounted():\n"
        "    from shop.cart import discounted\n\n"
        "    assert discounted([10], 50) == 5\n"
    )
    write(copy.path, {"src/shop/cart.py": code, "tests/test_cart.py": added_test})
    bandit = result(verify(copy, index), "bandit")
    assert [(f.rule, f.file) for f in bandit.findings] == [("bandit.B101", "src/shop/cart.py")]
    assert bandit.detail == "4 assert(s) in tests"  # the three it had, and the new one


def test_an_import_of_a_package_that_does_not_exist_is_refused(project: Path, index: Index) -> None:
    copy = working_copy(project)
    web = "import requests\nimport shopkart_utilz\n\nSESSION = requests.Session\n"
    write(copy.path, {"src/shop/cart.py": DISCOUNT, "src/shop/web.py": web})
    verification = verify(copy, index)
    imports = result(verification, "imports")
    assert not imports.passed and not verification.report.passed
    assert [(f.rule, f.file, f.line) for f in imports.findings] == [
        ("imports.unknown-package", "src/shop/web.py", 2)
    ]
    assert "shopkart-utilz" in index.asked and "requests" not in index.asked  # declared
    assert verification.facts["new_dependencies"] == []


def test_a_new_real_dependency_is_a_warning_and_a_fact(project: Path, index: Index) -> None:
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": DISCOUNT, "src/shop/web.py": "import flask\n"})
    verification = verify(copy, index)
    imports = result(verification, "imports")
    assert imports.passed and rules(imports) == ["imports.new-dependency"]
    assert verification.facts["new_dependencies"] == ["flask"]


def test_a_test_command_that_hangs_is_stopped_by_the_timeout(project: Path, index: Index) -> None:
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": DISCOUNT})
    hang = ["python", "-c", "import time; time.sleep(600)"]
    limits = Limits(timeout_seconds=2, cpu_seconds=60)
    verification = verify(copy, index, test=hang, limits=limits)
    test = result(verification, "test")
    assert not test.passed and rules(test) == ["sandbox.limit"]
    assert "timeout (2 s) limit" in test.findings[0].message
    assert verification.facts["tests_passed"] == -1


def test_another_test_command_passes_or_fails_by_its_exit_status(
    project: Path, index: Index
) -> None:
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": DISCOUNT})
    script = "from shop.cart import discounted; print('got', discounted([100], 10)); exit({})"
    good = verify(copy, index, test=["python", "-c", script.format(0)])
    assert result(good, "test").passed and good.facts["tests_passed"] == -1
    bad = verify(copy, index, test=["python", "-c", script.format(3)])
    finding = result(bad, "test").findings[0]
    assert finding.rule == "repo.tests-failed"
    assert "exited with status 3" in finding.message and "got 90.0" in finding.message


def test_a_command_the_environment_lacks_is_named(project: Path, index: Index) -> None:
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": DISCOUNT})
    verification = verify(copy, index, lint=["no-such-linter", "."])
    lint = result(verification, "lint")
    assert rules(lint) == ["repo.lint-command"] and "`no-such-linter`" in lint.findings[0].message


def test_tests_cannot_change_the_working_copy(
    project: Path, index: Index, backend: SandboxBackend
) -> None:
    copy = working_copy(project)
    vandal = f"""\
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def test_vandal():
    (HERE / "src" / "shop" / "cart.py").write_text("broken = True\\n")
    (HERE / "tests" / "test_cart.py").unlink()
    (HERE / "planted.txt").write_text("x")


def test_reach_the_copy():
    if {backend.isolated!r}:
        try:
            Path({str(copy.path / "planted.txt")!r}).write_text("x")
        except OSError:
            return
        raise AssertionError("the working copy was writable from the sandbox")
"""
    write(copy.path, {"src/shop/cart.py": DISCOUNT, "tests/test_vandal.py": vandal})
    before = changes(copy)
    verification = verify(copy, index, backend=backend)
    assert result(verification, "test").passed, result(verification, "test").findings
    assert changes(copy) == before
    assert (copy.path / "src" / "shop" / "cart.py").read_text() == DISCOUNT
    assert not (copy.path / "planted.txt").exists()


def test_tests_can_use_git_in_the_copy(
    project: Path, index: Index, backend: SandboxBackend
) -> None:
    copy = working_copy(project)
    check = f"""\
import subprocess


def test_head_is_the_base():
    done = subprocess.run(["git", "log", "-1", "--format=%H%n%s"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == {copy.base!r}
"""
    write(copy.path, {"src/shop/cart.py": DISCOUNT, "tests/test_git.py": check})
    verification = verify(copy, index, backend=backend)
    assert result(verification, "test").passed, result(verification, "test").findings


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available")
def test_a_test_that_reaches_for_the_network_fails(
    project: Path, index: Index, bwrap: SandboxBackend
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        listener.settimeout(30)
        with contextlib.suppress(OSError):  # closed when the verification is over
            accepted.append(listener.accept())

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    call = f"""\
import socket


def test_call_home():
    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
"""
    copy = working_copy(project)
    write(copy.path, {"src/shop/cart.py": DISCOUNT, "tests/test_net.py": call})
    try:
        verification = verify(copy, index, backend=bwrap)
    finally:
        listener.close()
        thread.join(timeout=35)
    test = result(verification, "test")
    assert not test.passed and not accepted
    failed = [f for f in test.findings if f.rule == "pytest.failed"]
    assert [f.file for f in failed] == ["tests/test_net.py"]
    assert verification.facts["tests_failed"] == 1 and verification.facts["tests_passed"] == 3


def test_the_repositorys_environment_runs_its_commands(
    project: Path, index: Index, backend: SandboxBackend
) -> None:
    files: dict[str, str | bytes] = {
        "pyproject.toml": "[project]\nname = 'shop'\nversion = '1'\n"
        "dependencies = ['greeting-lib']\n",
        "src/shop/__init__.py": "from greeting import hello\n\nGREETING = hello()\n",
        "wheels/greeting_lib-1.0-py3-none-any.whl": wheel(),
    }
    copy = working_copy(project, files)
    extra = "from shop import GREETING\n\nLOUD = GREETING.upper()\n"
    write(copy.path, {"src/shop/extra.py": extra})
    build = prepare_environment(
        copy,
        RepoSettings.model_validate({"path": "repo", "setup": [INSTALL]}),
        envs_dir=project / "envs",
        backend=backend,
        limits=LIMITS,
    )
    assert build.environment is not None, (build.findings, build.log)
    script = "import sys, shop.extra; assert shop.extra.LOUD == 'HI'; print(sys.prefix)"
    verification = verify(
        copy,
        index,
        backend=backend,
        environment=build.environment,
        test=["python", "-c", script],
        lint=["greet"],
    )
    report = verification.report
    assert report.passed, [(r.check, r.findings) for r in report.results if not r.passed]
    assert [r.check for r in report.results][:3] == ["change", "test", "lint"]


# -- reading what the tools said ----------------------------------------------------------------


def test_added_lines_reads_the_new_side_of_each_hunk(project: Path) -> None:
    old = "".join(f"line {n}\n" for n in range(1, 21))
    copy = working_copy(project, {"a.txt": old, "b.txt": "x\n"})
    lines = old.splitlines(keepends=True)
    lines[2] = "changed 3\n"
    lines.insert(10, "+++ added, looks like a header\n")
    lines.insert(11, "--- added too\n")
    del lines[18]
    write(copy.path, {"a.txt": "".join(lines), "c.txt": "one\ntwo", "b.txt": ""})
    by_path = {f.path: f for f in changes(copy).files}
    assert added_lines(by_path["a.txt"].patch) == {3, 11, 12}
    assert added_lines(by_path["c.txt"].patch) == {1, 2}
    assert added_lines(by_path["b.txt"].patch) == set()
    assert added_lines("") == set()


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("tests/test_cart.py", True),
        ("pkg/tests/helpers.py", True),
        ("test/data.json", True),
        ("src/shop/test_cart.py", True),
        ("src/shop/cart_test.py", True),
        ("conftest.py", True),
        ("src/shop/cart.py", False),
        ("src/testing/cart.py", False),
        ("docs/tests.md", False),
    ],
)
def test_which_paths_are_tests(path: str, is_test: bool) -> None:
    assert is_test_path(path) is is_test


@pytest.mark.parametrize(
    ("goal", "fix"),
    [
        ("Fix the rounding of totals", True),
        ("Checkout crashes on an empty cart", True),
        ("The discount is broken for 0 %", True),
        ("Total() raises an error for None", True),
        ("Fix the flaky test of the cart", False),  # the tests are what it is about
        ("Add a discounted total", False),
        ("Prefix every SKU with the shop's code", False),
    ],
)
def test_which_goals_ask_for_a_fix(goal: str, fix: bool) -> None:
    assert is_fix_goal(goal) is fix


def test_pytest_commands_get_a_junit_report_and_others_do_not() -> None:
    added = ["--junitxml=/w/r.xml", "-o", "junit_family=xunit1", "-p", "no:cacheprovider"]
    assert with_junit(["python", "-m", "pytest", "-q"], "/w/r.xml") == [
        "python", "-m", "pytest", *added, "-q"
    ]  # fmt: skip
    assert with_junit(["/env/bin/python3.12", "-m", "pytest", "--", "x"], "/w/r.xml") == [
        "/env/bin/python3.12", "-m", "pytest", *added, "--", "x"
    ]  # fmt: skip
    assert with_junit(["py.test", "--junitxml=mine.xml", "tests"], "/w/r.xml") == [
        "py.test", *added, "tests"
    ]  # fmt: skip
    assert with_junit(["/env/bin/pytest"], "/w/r.xml") == ["/env/bin/pytest", *added]
    assert with_junit(["make", "test"], "/w/r.xml") is None
    assert with_junit(["python", "-m", "unittest"], "/w/r.xml") is None


def test_ruff_check_is_asked_for_json_and_mypy_is_recognised() -> None:
    assert with_ruff_json(["ruff", "check", "--output-format", "full", "src"]) == [
        "ruff", "check", "--output-format=json", "src"
    ]  # fmt: skip
    assert with_ruff_json(["python", "-m", "ruff", "check"]) == [
        "python", "-m", "ruff", "check", "--output-format=json"
    ]  # fmt: skip
    assert with_ruff_json(["ruff", "format", "--check"]) is None
    assert with_ruff_json(["flake8"]) is None
    assert is_mypy(["mypy", "src"]) and is_mypy(["/e/bin/python", "-m", "mypy", "."])
    assert not is_mypy(["pyright"])
    out = (
        "src/a.py:3: error: Incompatible return value type  [return-value]\n"
        "src/a.py:3: note: see the docs\n"
        '/w/src/b.py:10:5: error: Name "x" is not defined  [name-defined]\n'
        "/elsewhere/c.py:1: error: outside\n"
        "Found 2 errors in 2 files\n"
    )
    assert mypy_findings(out, ["/w"]) == [
        ("src/a.py", 3, "return-value", "Incompatible return value type"),
        ("src/b.py", 10, "name-defined", 'Name "x" is not defined'),
        ("", 1, "error", "outside"),
    ]


def test_a_junit_report_is_read_warily(tmp_path: Path) -> None:
    good = tmp_path / "good.xml"
    good.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_ok" file="tests/test_a.py" line="3"/>'
        '<testcase classname="tests.test_a" name="test_bad" file="tests/test_a.py" line="6">'
        '<failure message="assert 1 == 2">tests/test_a.py:8: AssertionError</failure>'
        "</testcase>"
        '<testcase classname="tests.test_a" name="test_setup" file="tests/test_a.py" line="9">'
        '<error message="fixture failed">no frame here</error></testcase>'
        '<testcase classname="t" name="test_skip"><skipped message="later"/></testcase>'
        "</testsuite></testsuites>"
    )
    report = read_junit(good, ["/w"])
    assert not isinstance(report, str)
    counts = report.counts
    assert (counts.passed, counts.failed, counts.errors, counts.skipped) == (1, 1, 1, 1)
    assert [(f.rule, f.file, f.line) for f in report.findings] == [
        ("pytest.failed", "tests/test_a.py", 8),
        ("pytest.error", "tests/test_a.py", 10),  # the attribute is 0-based
    ]
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite>&a;</testsuite>')
    assert "DTD" in str(read_junit(bomb, ["/w"]))
    secret = tmp_path / "secret.txt"
    secret.write_text("<testsuite><testcase name='x'><failure message='s3cr3t'/></testcase>")
    link = tmp_path / "link.xml"
    link.symlink_to(secret)
    assert "cannot be read" in str(read_junit(link, ["/w"]))
    assert "no JUnit report" in str(read_junit(tmp_path / "missing.xml", ["/w"]))
