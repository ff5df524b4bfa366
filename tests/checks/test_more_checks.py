"""The ruff, bandit, secrets and jsonschema checks, run for real in a sandbox backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.checks import BUILTIN_CHECKS, run_checks
from shipyard.jobs import CheckSpec, JobKind
from shipyard.model import CheckReport
from shipyard.sandbox import BwrapBackend, Limits, ProcessBackend, RunResult, bwrap_available
from support import finding, line_of, make_kind, rules

LIMITS = Limits(timeout_seconds=60)

# Built from parts so that this test file itself holds no secret-looking literal.
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
PRIVATE_KEY_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE "
    + "KEY-----\n"
    + PRIVATE_KEY_BODY
    + "\n-----END RSA PRIVATE KEY-----\n"
)

CLEAN_PY = '''\
"""Adds numbers."""


def add(a: int, b: int) -> int:
    return a + b
'''

UNSAFE_PY = """\
import subprocess


def run(cmd):
    subprocess.call(cmd, shell=True)


def ask():
    return eval(input())
"""

PRODUCT_SCHEMA = {
    "type": "object",
    "required": ["name", "offers"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "offers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["price"],
                "properties": {"price": {"type": "number", "minimum": 0}},
            },
        },
    },
}
GOOD_PRODUCT = {"name": "Enamel Camp Mug", "offers": [{"price": 14.0}]}


def check(kind: JobKind, files: dict[str, str]) -> CheckReport:
    return run_checks(kind, files, backend=ProcessBackend(), limits=LIMITS, registry=BUILTIN_CHECKS)


def run_result(stdout: str, exit_code: int = 0, stderr: str = "") -> RunResult:
    return RunResult(
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        timed_out=False,
        killed_by=None,
        duration_ms=1.0,
        backend="process",
    )


# -- ruff -------------------------------------------------------------------------------------


@pytest.fixture
def ruff_kind(tmp_path: Path) -> JobKind:
    return make_kind(tmp_path, '[{ name = "ruff" }]')


def test_ruff_passes_clean_code(ruff_kind: JobKind) -> None:
    report = check(ruff_kind, {"calc.py": CLEAN_PY})

    assert report.passed, report.findings
    assert report.findings == []


def test_ruff_reports_unused_import_with_its_line(ruff_kind: JobKind) -> None:
    code = '"""Paths."""\n\nimport json\nimport os\n\nHOME = os.sep\n'

    report = check(ruff_kind, {"pkg/paths.py": code})

    found = finding(report, "ruff.F401")
    assert not report.passed
    assert found.severity == "error"
    assert found.file == "pkg/paths.py"
    assert found.line == line_of(code, "import json")
    assert "json" in found.message


def test_ruff_default_selection_includes_bugbear(ruff_kind: JobKind) -> None:
    code = "def append(item, items=[]):\n    items.append(item)\n    return items\n"

    report = check(ruff_kind, {"calc.py": code})

    assert finding(report, "ruff.B006").line == 1
    assert not report.passed


def test_ruff_select_option_replaces_the_default(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "ruff", select = ["E711"] }]')
    code = "import os\n\n\ndef missing(x):\n    return x == None\n"

    report = check(kind, {"calc.py": code})

    assert rules(report) == ["ruff.E711"]  # F401 on `import os` is not selected
    assert report.findings[0].line == 5


def test_ruff_output_cannot_silence_or_configure_ruff(ruff_kind: JobKind) -> None:
    files = {
        "calc.py": "import os  # noqa: F401\n",
        "other.py": "# ruff: noqa\nimport sys\n",
        "pyproject.toml": '[tool.ruff]\nexclude = ["*.py"]\n[tool.ruff.lint]\nselect = []\n',
        ".gitignore": "*.py\n",
    }

    report = check(ruff_kind, files)

    assert sorted((f.rule, f.file) for f in report.findings) == [
        ("ruff.F401", "calc.py"),
        ("ruff.F401", "other.py"),
    ]


def test_ruff_reports_syntax_errors(ruff_kind: JobKind) -> None:
    report = check(ruff_kind, {"calc.py": "def add(a, b:\n    return a + b\n"})

    assert not report.passed
    assert "ruff.invalid-syntax" in rules(report)
    assert all(f.file == "calc.py" for f in report.findings)


def test_ruff_rejects_a_bad_select_option(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "ruff", select = "E,F" }]')

    report = check(kind, {"calc.py": CLEAN_PY})

    assert not report.passed
    assert rules(report) == ["ruff.config"]


# -- bandit -----------------------------------------------------------------------------------


@pytest.fixture
def bandit_kind(tmp_path: Path) -> JobKind:
    return make_kind(tmp_path, '[{ name = "bandit" }]')


def test_bandit_passes_clean_code(bandit_kind: JobKind) -> None:
    report = check(bandit_kind, {"calc.py": CLEAN_PY})

    assert report.passed, report.findings
    assert report.findings == []


def test_bandit_flags_shell_true_and_eval_as_errors(bandit_kind: JobKind) -> None:
    report = check(bandit_kind, {"tools/run.py": UNSAFE_PY})

    assert not report.passed
    shell = finding(report, "bandit.B602")
    assert shell.severity == "error"
    assert shell.file == "tools/run.py"
    assert shell.line == line_of(UNSAFE_PY, "shell=True")
    assert "shell=True" in shell.message
    assert "severity HIGH" in shell.message
    assert "confidence HIGH" in shell.message
    evaluated = finding(report, "bandit.B307")
    assert evaluated.severity == "error"
    assert evaluated.line == line_of(UNSAFE_PY, "eval(")
    assert "severity MEDIUM" in evaluated.message


def test_bandit_low_severity_issue_is_a_warning(bandit_kind: JobKind) -> None:
    # Importing subprocess is a LOW-severity note (B404): reported, but it does not fail.
    code = "import subprocess\n\n\ndef run() -> None:\n    subprocess.run(['ls'], check=True)\n"

    report = check(bandit_kind, {"run.py": code})

    note = finding(report, "bandit.B404")
    assert note.severity == "warning"
    assert note.line == 1
    assert report.passed, report.findings


def test_bandit_fail_on_high_turns_medium_into_a_warning(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "bandit", fail_on = "high" }]')
    code = "def ask():\n    return eval(input())\n"

    report = check(kind, {"ask.py": code})

    evaluated = finding(report, "bandit.B307")
    assert evaluated.severity == "warning"
    assert report.passed, report.findings


def test_bandit_fail_on_high_still_fails_high_findings(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "bandit", fail_on = "high" }]')

    report = check(kind, {"run.py": UNSAFE_PY})

    assert finding(report, "bandit.B602").severity == "error"
    assert finding(report, "bandit.B307").severity == "warning"
    assert not report.passed


def test_bandit_fail_on_low_fails_low_findings(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "bandit", fail_on = "low" }]')

    report = check(kind, {"run.py": "import subprocess\n"})

    assert finding(report, "bandit.B404").severity == "error"
    assert not report.passed


def test_bandit_message_withholds_a_hardcoded_password(bandit_kind: JobKind) -> None:
    report = check(bandit_kind, {"settings.py": 'password = "correct-horse-battery"\n'})

    found = finding(report, "bandit.B105")
    assert "hardcoded password" in found.message
    assert "correct-horse-battery" not in found.message


def test_bandit_ignores_nosec_and_bandit_files_in_the_output(bandit_kind: JobKind) -> None:
    files = {
        "ask.py": "def ask():\n    return eval(input())  # nosec\n",
        ".bandit": "[bandit]\nskips = B307\nexclude = ./ask.py\n",
    }

    report = check(bandit_kind, files)

    assert finding(report, "bandit.B307").file == "ask.py"
    assert not report.passed


def test_bandit_cannot_be_replaced_by_a_generated_module(bandit_kind: JobKind) -> None:
    fake = 'print(\'{"results": [], "errors": []}\')\n'
    files = {"bandit.py": fake, "bandit/__main__.py": fake, "run.py": UNSAFE_PY}

    report = check(bandit_kind, files)

    assert finding(report, "bandit.B602").file == "run.py"
    assert not report.passed


def test_bandit_reports_a_file_it_could_not_scan(bandit_kind: JobKind) -> None:
    report = check(bandit_kind, {"broken.py": "def (:\n", "calc.py": CLEAN_PY})

    found = finding(report, "bandit.error")
    assert found.file == "broken.py"
    assert not report.passed


def test_bandit_rejects_a_bad_fail_on_option(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "bandit", fail_on = "critical" }]')

    report = check(kind, {"calc.py": CLEAN_PY})

    assert rules(report) == ["bandit.config"]
    assert not report.passed


# -- secrets ----------------------------------------------------------------------------------


@pytest.fixture
def secrets_kind(tmp_path: Path) -> JobKind:
    return make_kind(tmp_path, '[{ name = "secrets" }]')


def test_secrets_passes_output_without_secrets(secrets_kind: JobKind) -> None:
    report = check(secrets_kind, {"calc.py": CLEAN_PY, "index.html": "<h1>Mug</h1>\n"})

    assert report.passed, report.findings
    assert report.findings == []


def test_secrets_flags_an_aws_key_without_repeating_it(secrets_kind: JobKind) -> None:
    code = f'"""Uploads."""\n\nREGION = "us-east-1"\nACCESS = "{AWS_KEY}"\n'

    report = check(secrets_kind, {"upload.py": code})

    found = finding(report, "secrets.aws-access-key")
    assert not report.passed
    assert found.severity == "error"
    assert found.file == "upload.py"
    assert found.line == line_of(code, AWS_KEY)
    assert AWS_KEY not in found.message
    assert all(AWS_KEY not in f.message for f in report.findings)


def test_secrets_flags_a_private_key_block(secrets_kind: JobKind) -> None:
    text = "# deploy notes\n\n" + PRIVATE_KEY

    report = check(secrets_kind, {"deploy/notes.md": text})

    found = finding(report, "secrets.private-key")
    assert not report.passed
    assert found.file == "deploy/notes.md"
    assert found.line == line_of(text, "BEGIN RSA PRIVATE")
    assert PRIVATE_KEY_BODY not in json.dumps(report.to_dict())


def test_secrets_ignores_allowlist_pragmas_in_the_output(secrets_kind: JobKind) -> None:
    code = f'ACCESS = "{AWS_KEY}"  # pragma: allowlist secret\n'

    report = check(secrets_kind, {"upload.py": code})

    assert finding(report, "secrets.aws-access-key").line == 1
    assert not report.passed


def test_secrets_disable_plugins_option(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "secrets", disable_plugins = ["AWSKeyDetector"] }]')

    report = check(kind, {"upload.py": f'ACCESS = "{AWS_KEY}"\n'})

    assert report.passed, report.findings


def test_secrets_rejects_a_bad_disable_plugins_option(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "secrets", disable_plugins = ["--all-files"] }]')

    report = check(kind, {"calc.py": CLEAN_PY})

    assert rules(report) == ["secrets.config"]
    assert not report.passed


# -- jsonschema -------------------------------------------------------------------------------


def schema_kind(tmp_path: Path, options: str = "") -> JobKind:
    return make_kind(
        tmp_path,
        f'[{{ name = "jsonschema", schema = "schemas/product.json"{options} }}]',
        {"schemas/product.json": json.dumps(PRODUCT_SCHEMA)},
    )


def test_jsonschema_passes_a_valid_file(tmp_path: Path) -> None:
    report = check(schema_kind(tmp_path), {"product.json": json.dumps(GOOD_PRODUCT)})

    assert report.passed, report.findings
    assert report.findings == []


def test_jsonschema_reports_the_json_path_of_an_invalid_value(tmp_path: Path) -> None:
    product = {"name": "Mug", "offers": [{"price": 14.0}, {"price": -1}]}

    report = check(schema_kind(tmp_path), {"product.json": json.dumps(product)})

    found = finding(report, "jsonschema.invalid")
    assert not report.passed
    assert found.file == "product.json"
    assert "$.offers[1].price" in found.message
    assert "-1" in found.message


def test_jsonschema_reports_a_missing_required_property(tmp_path: Path) -> None:
    report = check(schema_kind(tmp_path), {"product.json": json.dumps({"name": "Mug"})})

    found = finding(report, "jsonschema.invalid")
    assert "'offers'" in found.message
    assert found.message.startswith("$")


def test_jsonschema_reports_unparsable_json_with_its_line(tmp_path: Path) -> None:
    text = '{\n  "name": "Mug",\n  "offers": [,]\n}\n'

    report = check(schema_kind(tmp_path), {"product.json": text})

    found = finding(report, "jsonschema.parse")
    assert not report.passed
    assert found.file == "product.json"
    assert found.line == 3


def test_jsonschema_reports_when_no_file_matches(tmp_path: Path) -> None:
    report = check(schema_kind(tmp_path), {"notes.txt": "no json here"})

    assert rules(report) == ["jsonschema.missing"]
    assert "*.json" in report.findings[0].message
    assert not report.passed


def test_jsonschema_files_option_picks_the_outputs(tmp_path: Path) -> None:
    kind = schema_kind(tmp_path, ', files = ["data/**/*.json"]')
    files = {
        "data/a/product.json": json.dumps(GOOD_PRODUCT),
        "data/b/product.json": json.dumps({"name": ""}),
        "package.json": json.dumps({"unrelated": True}),
    }

    report = check(kind, files)

    assert sorted((f.rule, f.file) for f in report.findings) == [
        ("jsonschema.invalid", "data/b/product.json"),
        ("jsonschema.invalid", "data/b/product.json"),
    ]


def test_jsonschema_reports_a_schema_it_cannot_find(tmp_path: Path) -> None:
    kind = make_kind(tmp_path, '[{ name = "jsonschema", schema = "nope.json" }]')

    report = check(kind, {"product.json": json.dumps(GOOD_PRODUCT)})

    assert rules(report) == ["jsonschema.config"]
    assert "nope.json" in report.findings[0].message


def test_jsonschema_refuses_a_schema_outside_the_job_folder(tmp_path: Path) -> None:
    # The output must not be able to supply its own schema.
    kind = make_kind(tmp_path, '[{ name = "jsonschema", schema = "../schema.json" }]')
    files = {"schema.json": "{}", "product.json": json.dumps({"anything": 1})}

    report = check(kind, files)

    assert rules(report) == ["jsonschema.config"]
    assert not report.passed


# -- the job kind's folder is never reported --------------------------------------------------


def test_no_check_reports_files_under_the_job_folder(tmp_path: Path) -> None:
    kind = make_kind(
        tmp_path,
        '[{ name = "ruff" }, { name = "bandit" }, { name = "secrets" },'
        ' { name = "jsonschema", schema = "schemas/product.json", files = ["**/*.json"] }]',
        {
            "schemas/product.json": json.dumps(PRODUCT_SCHEMA),
            "fixtures/unsafe.py": "import os\n" + UNSAFE_PY + f'KEY = "{AWS_KEY}"\n',
            "fixtures/id_rsa": PRIVATE_KEY,
            "fixtures/broken.json": "{not json",
            "fixtures/wrong.json": json.dumps({"name": 1}),
        },
    )

    report = check(kind, {"product.json": json.dumps(GOOD_PRODUCT), "calc.py": CLEAN_PY})

    assert [r.check for r in report.results] == ["ruff", "bandit", "secrets", "jsonschema"]
    assert report.findings == []
    assert report.passed


def test_a_generated_folder_named_like_the_job_folder_is_still_checked(tmp_path: Path) -> None:
    # Only the workspace's top-level _job/ is the job kind's; pkg/_job/ is output.
    kind = make_kind(tmp_path, '[{ name = "ruff" }, { name = "bandit" }, { name = "secrets" }]')
    code = "import os\n" + UNSAFE_PY + f'KEY = "{AWS_KEY}"\n'

    report = check(kind, {"pkg/_job/tool.py": code, "_jobs/tool.py": code})

    for check_name, rule in [
        ("ruff", "ruff.F401"),
        ("bandit", "bandit.B602"),
        ("secrets", "secrets.aws-access-key"),
    ]:
        result = next(r for r in report.results if r.check == check_name)
        assert sorted(f.file for f in result.findings if f.rule == rule) == [
            "_jobs/tool.py",
            "pkg/_job/tool.py",
        ]


# -- untrusted output -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ruff", "bandit", "secrets"])
@pytest.mark.parametrize(
    "stdout",
    [
        "",
        "not json at all",
        "[" * 100_000,
        "42",
        '{"results": "everything is fine"}',
        '[{"filename": 7, "location": "x"}]',
        '{"results": [{"filename": "a.py", "line_number": "three"}]}',
        '{"results": {"a.py": [{"type": 1, "line_number": -4}]}}',
        '{"results": {"a.py": "nothing"}}',
    ],
)
def test_malformed_tool_output_is_a_finding_not_an_exception(
    name: str, stdout: str, tmp_path: Path
) -> None:
    check_plugin = BUILTIN_CHECKS[name]

    findings = check_plugin.interpret(CheckSpec(name=name), run_result(stdout), tmp_path)

    assert [f.rule for f in findings] == [f"{name}.output"]
    assert findings[0].severity == "error"


@pytest.mark.parametrize("name", ["ruff", "bandit", "secrets"])
def test_a_failed_tool_run_is_a_finding(name: str, tmp_path: Path) -> None:
    run = run_result("", exit_code=2, stderr="Traceback ...\nImportError: no module named x\n")

    findings = BUILTIN_CHECKS[name].interpret(CheckSpec(name=name), run, tmp_path)

    assert [f.rule for f in findings] == [f"{name}.crashed"]
    assert "status 2" in findings[0].message
    assert "ImportError" in findings[0].message


def test_paths_seen_inside_the_bubblewrap_sandbox_map_to_workspace_files(tmp_path: Path) -> None:
    stdout = json.dumps(
        [
            {"code": "F401", "filename": "/sandbox/work/pkg/a.py", "location": {"row": 3}},
            {"code": "F401", "filename": "/sandbox/work/_job/t.py", "location": {"row": 1}},
            {"code": "F401", "filename": "/etc/passwd", "location": {"row": 1}},
        ]
    )

    findings = BUILTIN_CHECKS["ruff"].interpret(
        CheckSpec(name="ruff"), run_result(stdout), tmp_path
    )

    assert [(f.rule, f.file, f.line) for f in findings] == [
        ("ruff.F401", "pkg/a.py", 3),
        ("ruff.F401", "", 1),  # not a workspace file: no location is claimed
    ]


# -- under bubblewrap, where available ---------------------------------------------------------


@pytest.fixture
def bwrap() -> Iterator[BwrapBackend]:
    if not bwrap_available():
        pytest.skip("bubblewrap is not available")
    backend = BwrapBackend(pool_size=1)
    try:
        yield backend
    finally:
        backend.close()


def test_the_checks_work_the_same_under_bubblewrap(tmp_path: Path, bwrap: BwrapBackend) -> None:
    kind = make_kind(
        tmp_path,
        '[{ name = "ruff" }, { name = "bandit" }, { name = "secrets" },'
        ' { name = "jsonschema", schema = "schemas/product.json" }]',
        {"schemas/product.json": json.dumps(PRODUCT_SCHEMA), "fixtures/t.py": UNSAFE_PY},
    )
    code = "import os\n" + UNSAFE_PY + f'KEY = "{AWS_KEY}"\n'
    files = {"run.py": code, "product.json": json.dumps({"name": "Mug"})}

    report = run_checks(kind, files, backend=bwrap, limits=LIMITS, registry=BUILTIN_CHECKS)

    assert report.sandbox == "bwrap"
    assert [r.passed for r in report.results] == [False, False, False, False]
    located = {(f.rule, f.file, f.line) for f in report.findings}
    assert ("ruff.F401", "run.py", 1) in located
    assert ("bandit.B602", "run.py", 1 + line_of(UNSAFE_PY, "shell=True")) in located
    assert ("secrets.aws-access-key", "run.py", line_of(code, "KEY =")) in located
    assert ("jsonschema.invalid", "product.json", 0) in located
    assert all(not f.file.startswith("_job/") for f in report.findings)
