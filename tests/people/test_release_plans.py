"""A production target takes releases by a rollout plan, or at once only where a policy
permits release_immediately: refused at the door, at a worker's start, by `policy check`,
and at the release itself; a target in another environment is unaffected."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy import select

from people._helpers import edit_config, waiting_task
from shipyard.config import Project, load_project
from shipyard.errors import ConfigError, PolicyDenied
from shipyard.jobs import BatchRow
from shipyard.orchestrator import govern
from shipyard.service import Runtime, approve, launch, list_tasks, submit, task_story
from shipyard.store import AuditRow
from support import IMMEDIATE, PRODUCT, SETTLED, run_cli, wait_for_state

NEEDS_A_PLAN = (
    "target 'storefront-site' is in production and has no rollout plan: "
    "(a release of job kind 'landing-page'|releases of 'landing-page', 'product-copy', "
    "'ab-test') would take all of its traffic at once"
)


def without_leave(project: Project) -> Project:
    """The test project (no rollout plan) without the policy that lets its site switch at once."""
    path = project.policy_files[0]
    text = path.read_text()
    assert IMMEDIATE in text
    path.write_text(text.replace(IMMEDIATE, ""))
    return load_project(project.root)


def test_a_production_target_without_a_plan_is_refused_at_start(project: Project) -> None:
    project = without_leave(project)
    root = project.root
    for command in (["worker", "--until-idle"], ["policy", "check"]):
        done = run_cli(root, *command)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert re.search(NEEDS_A_PLAN, done.stderr), done.stderr
        assert "[targets.storefront-site.rollout]" in done.stderr
        assert 'action == Action::"release_immediately"' in done.stderr
        assert 'resource == Target::"storefront-site"' in done.stderr
    rt = Runtime.open(project)
    try:
        with pytest.raises(ConfigError, match=NEEDS_A_PLAN):
            launch(rt)
        with pytest.raises(ConfigError, match=NEEDS_A_PLAN):  # nothing is recorded
            submit(rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)],
                   submitted_by="me")  # fmt: skip
        assert list_tasks(rt) == []
    finally:
        rt.close()


def test_a_policy_permit_lets_it_release_at_once(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    checked = run_cli(project.root, "policy", "check")  # the test project has the permit
    assert checked.returncode == 0, checked.stderr
    rt = start_worker(project)
    task_id = waiting_task(rt)
    approve(rt, task_id, actor="bob")
    assert wait_for_state(rt, task_id, SETTLED) == "published"
    [release] = [s for s in task_story(rt, task_id).steps if s.stage == "release"]
    assert "tests-release-at-once" in release.detail["immediate"]


def test_a_target_in_another_environment_is_unaffected(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    project = edit_config(
        without_leave(project), 'environment = "production"', 'environment = "staging"'
    )
    rt = start_worker(project)
    task_id = waiting_task(rt)
    approve(rt, task_id, actor="bob")
    assert wait_for_state(rt, task_id, SETTLED) == "published"
    [release] = [s for s in task_story(rt, task_id).steps if s.stage == "release"]
    assert "immediate" not in release.detail


def test_the_release_itself_asks_and_audits_a_refusal(project: Project) -> None:
    rt = Runtime.open(without_leave(project))
    try:
        kind = rt.jobs.get("landing-page")
        with pytest.raises(PolicyDenied, match=NEEDS_A_PLAN):
            govern.require_release_plan(rt, kind, task_id="t-1")
        with rt.sessions() as session:
            refused = session.scalar(
                select(AuditRow).where(AuditRow.action == "release_immediately")
            )
        assert refused is not None
        assert (refused.actor, refused.resource, refused.decision) == (
            "agent storefront",
            "target storefront-site",
            "deny",
        )
    finally:
        rt.close()


def test_a_git_target_in_production_needs_the_permit(project: Project) -> None:
    project = edit_config(
        without_leave(project), 'kind = "static-site"', 'kind = "git"\nrepository = "site.git"'
    )
    done = run_cli(project.root, "policy", "check")
    assert done.returncode == 2, done.stderr
    assert re.search(NEEDS_A_PLAN, done.stderr), done.stderr
    assert "rollout]" not in done.stderr  # a git target has no traffic to shift
    assert 'action == Action::"release_immediately"' in done.stderr
