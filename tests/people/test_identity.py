"""Who acts at the command line: the login's person, SHIPYARD_TOKEN's person, `--as` only for
oneself unless a policy permits act_for (then both names are kept), and a project without
[people] taking names as given, saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from people._helpers import ACT_FOR_CAROL, LOGIN, add_policy, edit_config
from shipyard.config import Project, load_project
from shipyard.errors import ConfigError
from shipyard.service import Runtime, create_token, find_task, revoke_token
from shipyard.store import AuditRow
from shipyard.testing import scaffold_project
from support import PRODUCT, run_cli

INPUTS = [a for k, v in PRODUCT.items() for a in ("-i", f"{k}={v}")]


def submit_as(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``shipyard submit landing-page`` (one row) with ``args``: (status, task id, stderr)."""
    done = run_cli(root, "submit", "landing-page", *INPUTS, "--again", "--json", *args, env=env)
    task = json.loads(done.stdout)["submitted"][0] if done.returncode == 0 else ""
    return done.returncode, task, done.stderr


def submitter(project: Project, task_id: str) -> tuple[str, str]:
    rt = Runtime.open(project)
    try:
        task = find_task(rt, task_id)
        return task.submitted_by, task.submitted_principal
    finally:
        rt.close()


def audited(project: Project, action: str) -> list[AuditRow]:
    rt = Runtime.open(project)
    try:
        with rt.sessions() as session:
            return list(session.scalars(select(AuditRow).where(AuditRow.action == action)))
    finally:
        rt.close()


def token_for(project: Project, person: str, role: str = "operator") -> tuple[str, str]:
    rt = Runtime.open(project)
    try:
        return create_token(rt, person, role, actor="ops")
    finally:
        rt.close()


def test_the_login_in_os_users_is_the_person_whatever_user_says(shop: Project) -> None:
    # $USER and $LOGNAME are anyone's to set; the login comes from the user database.
    status, task_id, err = submit_as(shop.root, env={"USER": "bob", "LOGNAME": "bob"})
    assert status == 0, err
    assert submitter(shop, task_id) == ("alice", "alice")
    named = submit_as(shop.root, "--as", "alice")  # naming yourself is always fine
    assert named[0] == 0, named[2]
    assert submitter(shop, named[1]) == ("alice", "alice")


def test_a_login_no_person_holds_is_refused_with_the_fix(project: Project) -> None:
    status, _, err = submit_as(project.root, "--as", "alice")
    assert status == 2, err
    assert f"login {LOGIN!r} is not one of this project's people" in err
    assert "os_users" in err and "SHIPYARD_TOKEN" in err


def test_a_login_in_two_peoples_os_users_does_not_load(project: Project) -> None:
    edit_config(project, "[people.alice]\n", f'[people.alice]\nos_users = ["{LOGIN}"]\n')
    with pytest.raises(ConfigError, match=f"login '{LOGIN}' is in the os_users of both"):
        edit_config(project, "[people.bob]\n", f'[people.bob]\nos_users = ["{LOGIN}"]\n')


def test_a_personal_token_is_its_person_and_a_revoked_one_is_refused(shop: Project) -> None:
    token_id, token = token_for(shop, "bob")
    status, task_id, err = submit_as(shop.root, env={"SHIPYARD_TOKEN": token})
    assert status == 0, err
    assert submitter(shop, task_id) == ("bob", "bob")  # the token's person, not the login's

    rt = Runtime.open(shop)
    try:
        revoke_token(rt, token_id, actor="ops")
    finally:
        rt.close()
    for bad in (token, "shy_000000000000_" + "A" * 43, "not a token"):
        status, _, err = submit_as(shop.root, env={"SHIPYARD_TOKEN": bad})
        assert status == 2, err
        assert "SHIPYARD_TOKEN holds no live token" in err and "shipyard tokens" in err


def test_a_token_whose_role_may_not_do_it_is_refused(shop: Project) -> None:
    _, viewer = token_for(shop, "bob", "viewer")
    status, _, err = submit_as(shop.root, env={"SHIPYARD_TOKEN": viewer})
    assert status == 6, err
    assert "bob's viewer token" in err and "may not operate" in err


def test_as_someone_else_is_refused_and_audited(shop: Project) -> None:
    status, _, err = submit_as(shop.root, "--as", "carol")
    assert status == 6, err
    assert f"alice (login {LOGIN}) may not act for carol (--as carol)" in err
    assert "act_for" in err
    status, _, err = submit_as(shop.root, env={"SHIPYARD_USER": "carol"})
    assert status == 6, err
    assert "($SHIPYARD_USER carol)" in err and "unset SHIPYARD_USER" in err
    unknown = submit_as(shop.root, "--as", "mallory")
    assert unknown[0] == 2 and "'mallory', who is not one of this project's people" in unknown[2]
    denials = audited(shop, "act_for")
    assert [(a.actor, a.resource, a.decision) for a in denials] == [
        ("alice", "person carol", "deny"),
        ("alice", "person carol", "deny"),
    ]


def test_act_for_under_a_policy_keeps_both_names(shop: Project) -> None:
    shop = add_policy(shop, ACT_FOR_CAROL)
    status, task_id, err = submit_as(shop.root, "--as", "carol")
    assert status == 0, err
    assert submitter(shop, task_id) == ("carol", "alice")
    [allowed] = audited(shop, "act_for")
    assert (allowed.actor, allowed.resource, allowed.decision) == ("alice", "person carol", "allow")
    assert "alice-acts-for-carol" in allowed.reason
    [submitted] = [a for a in audited(shop, "submit") if a.task_id == task_id]
    assert submitted.actor == "carol" and submitted.detail["principal"] == "alice"
    # The permit is for carol only.
    assert submit_as(shop.root, "--as", "bob")[0] == 6


def test_without_people_names_are_taken_as_given_and_that_is_said(tmp_path: Path) -> None:
    root = scaffold_project(tmp_path / "plain")
    made = run_cli(root, "init")
    assert made.returncode == 0, made.stderr
    assert "no two-person guarantee" in made.stderr
    done = run_cli(root, "submit", "note", "-i", "name=ann", "--as", "anyone", "--json")
    assert done.returncode == 0, done.stderr
    [task_id] = json.loads(done.stdout)["submitted"]
    assert submitter(load_project(root), task_id) == ("anyone", "anyone")
    listed = run_cli(root, "approvals")
    assert listed.returncode == 0, listed.stderr
    assert "no [people] table" in listed.stderr and "no two-person guarantee" in listed.stderr


def test_a_token_for_someone_else_needs_issue_token(shop: Project) -> None:
    # shop-owner (merchandiser, approver, operator) may not make tokens for others.
    _, owner = token_for(shop, "shop-owner", "admin")
    env = {"SHIPYARD_TOKEN": owner}
    refused = run_cli(shop.root, "tokens", "create", "bob", "--role", "approver", env=env)
    assert refused.returncode == 6, refused.stderr
    assert "shop-owner may not issue_token person bob" in refused.stderr
    assert refused.stdout == ""  # no token was printed
    own = run_cli(shop.root, "tokens", "create", "shop-owner", "--role", "viewer", env=env)
    assert own.returncode == 0, own.stderr
    # alice (by login) is an admin in the test project: the example lets admins issue tokens.
    made = run_cli(shop.root, "tokens", "create", "bob", "--role", "approver")
    assert made.returncode == 0, made.stderr
    status, _, err = submit_as(shop.root, env={"SHIPYARD_TOKEN": made.stdout.strip()})
    assert status == 6 and "bob's approver token" in err  # an approver token does not submit
    listed = run_cli(shop.root, "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if " bob " in line]
    assert len(rows) == 1 and " alice " in rows[0]  # who made it
    [denied] = [a for a in audited(shop, "issue_token") if a.decision == "deny"]
    assert (denied.actor, denied.resource) == ("shop-owner", "person bob")
