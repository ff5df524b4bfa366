"""Repository changes through the whole pipeline, in process, on SQLite and PostgreSQL.

A real git repository made by the test, a model tier scripted to reply with edits in the
documented format, the repository's own tests run in the sandbox, the built-in policy's one
approval by someone other than the submitter, and the branch ``shipyard/<task>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from repos_support import commit_all, make_repository, run_git, write
from shipyard.config import Project, load_project
from shipyard.errors import InputError, NotFound, PolicyDenied
from shipyard.generate import GenerationRequest
from shipyard.service import (
    Runtime,
    approve,
    steer,
    submit_change,
    task_story,
)
from shipyard.store import AttemptRow
from shipyard.testing import FunctionProvider
from support import SETTLED, wait_for_state, wait_until_finished

CALC = {
    "calc/__init__.py": '"""A tiny calculator."""\n\n\ndef add(a, b):\n    return a - b\n',
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}

FIX = """I will fix the addition.

calc/__init__.py
<<<<<<< SEARCH
def add(a, b):
    return a - b
=======
def add(a, b):
    return a + b
>>>>>>> REPLACE
"""

REPAIR = """The previous attempt multiplied; add instead.

calc/__init__.py
<<<<<<< SEARCH
    return a * b
=======
    return a + b
>>>>>>> REPLACE
"""

WRONG = """calc/__init__.py
<<<<<<< SEARCH
def add(a, b):
    return a - b
=======
def add(a, b):
    return a * b
>>>>>>> REPLACE
"""

MISSING = """calc/__init__.py
<<<<<<< SEARCH
def subtract(a, b):
    return a - b
=======
def subtract(a, b):
    return a + b
>>>>>>> REPLACE
"""


def change_project(tmp_path: Path, *, extra: str = "") -> tuple[Project, Path]:
    """A fresh project: only [project], one [repos.NAME] and the default tier."""
    repo = make_repository(tmp_path / "calc", CALC)
    root = tmp_path / "project"
    root.mkdir()
    (root / "shipyard.toml").write_text(
        '[project]\nname = "changes"\n\n'
        f'[repos.calc]\npath = "{repo}"\nmerge_to = "release"\n'
        "\n[people.me]\nroles = []\n[people.bob]\nroles = []\n" + extra
    )
    run_git(repo, "branch", "release")
    return load_project(root), repo


def replies(*texts: str) -> FunctionProvider:
    """A model tier that replies with ``texts`` in turn (the last repeats)."""

    def reply(request: GenerationRequest) -> str:
        assert request.reply_format == "edits" and request.goal
        return texts[min(request.attempt, len(texts)) - 1]

    return FunctionProvider(reply, model="scripted-edits")


def branches(repo: Path) -> list[str]:
    return run_git(repo, "branch", "--format=%(refname:short)").split()


@pytest.mark.usefixtures("database")
def test_a_passing_change_waits_for_one_approval_then_is_a_branch_merged_into_release(
    tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    project, repo = change_project(tmp_path)
    rt = start_worker(project, replies(WRONG, REPAIR))
    before = run_git(repo, "rev-parse", "main").strip()
    result = submit_change(rt, "calc", "fix add: it subtracts", submitted_by="me")
    task_id = result.submitted[0]

    assert wait_for_state(rt, task_id, SETTLED, timeout=120) == "waiting_approval"
    story = task_story(rt, task_id)
    assert story.task.job_kind == "repo-change:calc"
    first, second = story.attempts
    assert first.passed is False and second.passed is True
    failing = next(f for f in first.report["results"] if f["check"] == "test")
    assert not failing["passed"] and any("test_calc" in f["file"] for f in failing["findings"])
    assert json.loads(second.files["change.json"])["files"][0]["path"] == "calc/__init__.py"
    assert "+    return a + b" in second.files["change.patch"]
    with rt.sessions() as session:
        recorded = session.scalar(
            select(AttemptRow.change).where(AttemptRow.task_id == task_id, AttemptRow.number == 1)
        )
    assert recorded is not None and "calc/__init__.py" in [
        f["path"] for f in recorded["context"]["files"]
    ]
    assert recorded["facts"]["tests_failed"] == 1
    assert "shipyard/" + task_id not in branches(repo)  # nothing released before approval

    with pytest.raises(PolicyDenied):
        approve(rt, task_id, actor="me", reason="mine")  # the submitter never approves
    approve(rt, task_id, actor="bob", reason="fix is right")
    assert wait_until_finished(rt, task_id, timeout=120) == "published"

    branch = f"shipyard/{task_id}"
    log = run_git(repo, "log", "-1", "--format=%P%n%B", branch)
    assert log.splitlines()[0] == before  # one commit, on the base
    assert f"Shipyard-Task: {task_id}" in log and "Shipyard-Artifact: sha256:" in log
    assert "fix add: it subtracts" in log
    assert "a + b" in run_git(repo, "show", "release:calc/__init__.py")
    assert run_git(repo, "rev-parse", "main").strip() == before  # main untouched

    steer(rt, task_id, "rollback", actor="bob")
    assert "a - b" in run_git(repo, "show", "release:calc/__init__.py")


@pytest.mark.usefixtures("database")
def test_a_change_whose_tests_keep_failing_fails_with_no_branch(
    tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    project, repo = change_project(tmp_path)
    rt = start_worker(project, replies(WRONG))
    task_id = submit_change(rt, "calc", "fix add", submitted_by="me").submitted[0]
    assert wait_until_finished(rt, task_id, timeout=180) == "failed"
    assert len(task_story(rt, task_id).attempts) == 3
    assert not [b for b in branches(repo) if b.startswith("shipyard/")]


@pytest.mark.usefixtures("database")
def test_edits_that_do_not_apply_are_findings_fed_to_the_next_attempt(
    tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    project, _ = change_project(tmp_path)
    seen: list[str] = []

    def reply(request: GenerationRequest) -> str:
        seen.append(request.prompt)
        return MISSING if request.attempt == 1 else FIX

    rt = start_worker(project, FunctionProvider(reply))
    task_id = submit_change(rt, "calc", "fix add", submitted_by="me").submitted[0]
    assert wait_for_state(rt, task_id, SETTLED, timeout=120) == "waiting_approval"
    first = task_story(rt, task_id).attempts[0]
    findings = first.report["results"][0]["findings"]
    assert findings and findings[0]["file"] == "calc/__init__.py"
    assert "def subtract" in seen[1]  # the finding (the text looked for) reached attempt 2
    assert "def add(a, b)" in seen[0]  # the context holds the relevant file


def test_bad_submissions_name_what_is_wrong_and_record_nothing(
    tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    project, repo = change_project(tmp_path)
    rt = start_worker(project, replies(FIX))
    with pytest.raises(NotFound, match="calc"):
        submit_change(rt, "nope", "fix add", submitted_by="me")
    with pytest.raises(InputError, match="not a branch, tag or commit"):
        submit_change(rt, "calc", "fix add", base="no-such-branch", submitted_by="me")
    with pytest.raises(InputError, match="goal is empty"):
        submit_change(rt, "calc", "  ", submitted_by="me")
    with pytest.raises(InputError, match="no tier named"):
        submit_change(rt, "calc", "fix add", tier="gpt-9", submitted_by="me")
    write(repo, {"calc/__init__.py": "dirty\n"})  # a dirty checkout: the commit is what counts
    task_id = submit_change(rt, "calc", "fix add", submitted_by="me").submitted[0]
    assert wait_for_state(rt, task_id, SETTLED, timeout=120) == "waiting_approval"
    assert (repo / "calc/__init__.py").read_text() == "dirty\n"
    commit_all(repo, "moved on")
    assert task_story(rt, task_id).task.inputs["base"] != run_git(repo, "rev-parse", "HEAD")
