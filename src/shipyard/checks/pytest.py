"""The ``pytest`` check: the job kind's tests (under ``_job/``) run against the output.

Results come from pytest's JUnit XML report, read on the host: tests run, failed, and for
each failure the assertion and the line it failed at.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from shipyard.checks._base import JOB_DIR
from shipyard.jobs import CheckSpec
from shipyard.model import Finding
from shipyard.sandbox import RunResult

__all__ = ["PytestCheck"]

REPORT = ".shipyard-junit.xml"
_LOCATION = re.compile(r"^([^\s:]+\.py):(\d+):", re.MULTILINE)


class PytestCheck:
    name = "pytest"

    def command(self, spec: CheckSpec) -> list[str]:
        # A job kind's tests live in its folder (``tests = "tests"`` -> _job/tests); with
        # ``in_workspace = true`` pytest discovers them in the workspace (``shipyard check``).
        tests = spec.options.get("tests", "tests")
        paths = [f"{JOB_DIR}/{p}" for p in ([tests] if isinstance(tests, str) else tests)]
        if spec.options.get("in_workspace"):
            paths = []
        return [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir=.",
            f"--junitxml={REPORT}",
            "-o",
            "junit_family=xunit2",
            *(paths or [f"--ignore={JOB_DIR}", "."]),
        ]

    def interpret(self, spec: CheckSpec, run: RunResult, workspace: Path) -> list[Finding]:
        report = workspace / REPORT
        if not report.is_file():
            tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
            return [
                Finding(rule="pytest.no-report", message=" | ".join(tail) or "pytest did not run")
            ]
        try:
            root = ET.parse(report).getroot()
        except ET.ParseError as exc:
            return [Finding(rule="pytest.no-report", message=f"unreadable JUnit report: {exc}")]
        findings = []
        ran = 0
        for case in root.iter("testcase"):
            ran += 1
            for outcome in ("failure", "error"):
                node = case.find(outcome)
                if node is None:
                    continue
                text = node.text or ""
                # The innermost frame inside the workspace (not the standard library's).
                frames = [f for f in _LOCATION.findall(text) if not f[0].startswith("/")]
                file, line = frames[-1] if frames else ("", "0")
                message = node.get("message") or next(iter(text.strip().splitlines()[-1:]), "")
                findings.append(
                    Finding(
                        rule=f"pytest.{'failed' if outcome == 'failure' else 'error'}",
                        message=f"{case.get('name')}: {message[:500]}",
                        file=file,
                        line=int(line),
                    )
                )
        if ran == 0:
            findings.append(Finding(rule="pytest.no-tests", message="no tests were collected"))
        elif run.exit_code not in (0, 1) and not findings:
            findings.append(
                Finding(rule="pytest.exit", message=f"pytest exited with status {run.exit_code}")
            )
        return findings
