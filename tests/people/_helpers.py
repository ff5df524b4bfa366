"""Helpers of the people tests: this process's login, editing a test project's files, and a
task waiting at the gate."""

from __future__ import annotations

import os
import pwd

from shipyard.config import Project, load_project
from shipyard.jobs import BatchRow
from shipyard.service import Runtime, submit
from support import PRODUCT, wait_for_state

LOGIN = pwd.getpwuid(os.getuid()).pw_name
"""The login of the user running the tests (from the user database, as Shipyard reads it)."""

ACT_FOR_CAROL = """@id("alice-acts-for-carol")
permit(principal == Person::"alice", action == Action::"act_for", resource == Person::"carol");"""
"""A policy letting alice act for carol (and no one for anyone else)."""


def add_policy(project: Project, text: str) -> Project:
    """``project`` with ``text`` appended to its policy file (reloaded)."""
    path = project.policy_files[0]
    path.write_text(path.read_text() + "\n" + text + "\n")
    return load_project(project.root)


def edit_config(project: Project, old: str, new: str) -> Project:
    """``project`` with ``old`` replaced by ``new`` in shipyard.toml (reloaded)."""
    path = project.config_path
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return load_project(project.root)


def waiting_task(rt: Runtime, submitted_by: str = "me", principal: str = "") -> str:
    """Submit a landing page as ``submitted_by``; its id once it waits for approval."""
    kind = rt.jobs.get("landing-page")
    rows = [BatchRow(where="t", data=PRODUCT)]
    [task_id] = submit(rt, kind, rows, submitted_by=submitted_by, principal=principal).submitted
    state = wait_for_state(rt, task_id, {"waiting_approval", "failed", "error", "published"})
    assert state == "waiting_approval", state
    return task_id
