"""Two approvals are two people: the same person twice, under one name or two (a permitted
act_for, two tokens of theirs, the command line then the API), counts once; the submitter
never approves, under any name; two different people release the task."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select

from people._helpers import ACT_FOR_CAROL, add_policy, waiting_task
from server.test_api import serving
from shipyard.config import Project
from shipyard.errors import PolicyDenied, StateError
from shipyard.service import Runtime, approval_queue, approve, create_token, find_task
from shipyard.store import AuditRow, DecisionRow
from support import PRODUCT, SETTLED, run_cli, wait_for_state


def tokens(rt: Runtime, person: str, n: int = 1, role: str = "approver") -> list[str]:
    return [create_token(rt, person, role, actor="ops")[1] for _ in range(n)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def approvals(rt: Runtime, task_id: str) -> list[tuple[str, str]]:
    """(name, principal) of each approval given, in order."""
    with rt.sessions() as session:
        rows = session.execute(
            select(DecisionRow.actor, DecisionRow.principal)
            .where(DecisionRow.task_id == task_id, DecisionRow.decision == "approved")
            .order_by(DecisionRow.id)
        )
        return [(a, p) for a, p in rows]


def test_the_same_person_approving_twice_is_refused(
    two_approvals: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(two_approvals)
    task_id = waiting_task(rt)
    assert find_task(rt, task_id).approvals_required == 2
    first = run_cli(two_approvals.root, "approve", task_id)
    assert first.returncode == 0, first.stderr
    assert f"{task_id} waiting_approval by alice (more approvals needed)" in first.stdout
    again = run_cli(two_approvals.root, "approve", task_id, "--as", "alice")
    assert again.returncode == 1, again.stdout
    assert f"alice has already approved task {task_id}" in again.stderr
    assert "distinct people (2 needed)" in again.stderr
    [bob] = tokens(rt, "bob")
    done = run_cli(two_approvals.root, "approve", task_id, env={"SHIPYARD_TOKEN": bob})
    assert done.returncode == 0, done.stderr
    assert wait_for_state(rt, task_id, SETTLED) == "published"  # alice and bob: two people
    assert approvals(rt, task_id) == [("alice", "alice"), ("bob", "bob")]
    with rt.sessions() as session:
        refused = session.scalars(
            select(AuditRow).where(AuditRow.action == "approve", AuditRow.decision == "deny")
        ).all()
    assert [r.actor for r in refused] == ["alice"]
    assert "alice has already approved" in refused[0].reason


def test_two_tokens_of_one_person_count_once(
    two_approvals: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(two_approvals)
    task_id = waiting_task(rt)
    one, other = tokens(rt, "bob", 2)
    first = run_cli(two_approvals.root, "approve", task_id, env={"SHIPYARD_TOKEN": one})
    assert first.returncode == 0, first.stderr
    second = run_cli(two_approvals.root, "approve", task_id, env={"SHIPYARD_TOKEN": other})
    assert second.returncode == 1 and f"bob has already approved task {task_id}" in second.stderr
    assert find_task(rt, task_id).state == "waiting_approval"
    [waiting] = approval_queue(rt)
    assert (waiting.approvers, waiting.principals) == (["bob"], ["bob"])


def test_one_person_under_two_names_does_not_meet_the_two_person_rule(
    two_approvals: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(add_policy(two_approvals, ACT_FOR_CAROL))
    task_id = waiting_task(rt)
    as_carol = run_cli(two_approvals.root, "approve", task_id, "--as", "carol")
    assert as_carol.returncode == 0, as_carol.stderr
    assert "waiting_approval by carol (by alice)" in as_carol.stdout
    as_alice = run_cli(two_approvals.root, "approve", task_id)
    assert as_alice.returncode == 1
    assert f"alice has already approved task {task_id} (as carol)" in as_alice.stderr
    assert "is alice's again and does not count twice" in as_alice.stderr
    assert find_task(rt, task_id).state == "waiting_approval"
    shown = run_cli(two_approvals.root, "approvals")
    assert "1/2 (carol by alice)" in shown.stdout
    assert approvals(rt, task_id) == [("carol", "alice")]
    # Carol herself is someone else: her approval is the second person's.
    [carol] = tokens(rt, "carol")
    done = run_cli(two_approvals.root, "approve", task_id, env={"SHIPYARD_TOKEN": carol})
    assert done.returncode == 0, done.stderr
    assert wait_for_state(rt, task_id, SETTLED) == "published"


def test_the_submitter_never_approves_under_another_name(
    shop: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(add_policy(shop, ACT_FOR_CAROL))
    inputs = [a for k, v in PRODUCT.items() for a in ("-i", f"{k}={v}")]
    submitted = run_cli(shop.root, "submit", "landing-page", *inputs, "--as", "carol", "--json")
    assert submitted.returncode == 0, submitted.stderr
    task_id = json.loads(submitted.stdout)["submitted"][0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    task = find_task(rt, task_id)
    assert (task.submitted_by, task.submitted_principal) == ("carol", "alice")
    refused = run_cli(shop.root, "approve", task_id)  # alice, who submitted it as carol
    assert refused.returncode == 1
    assert f"alice submitted task {task_id} and cannot also approve or reject it" in refused.stderr
    with pytest.raises(PolicyDenied, match="carol submitted task"):
        approve(rt, task_id, actor="carol")  # carol, in whose name it was submitted
    approve(rt, task_id, actor="bob")
    assert wait_for_state(rt, task_id, SETTLED) == "published"


def test_the_api_counts_the_tokens_person_as_the_command_line_does(
    two_approvals: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(two_approvals)
    task_id = waiting_task(rt)
    [alice] = tokens(rt, "alice")
    [bob] = tokens(rt, "bob")
    assert run_cli(two_approvals.root, "approve", task_id).returncode == 0  # alice, by login
    with serving(rt) as url, httpx.Client(base_url=url + "/api/v1", timeout=30) as client:
        again = client.post(f"/tasks/{task_id}/approve", json={"reason": ""}, headers=bearer(alice))
        assert again.status_code == 409, again.text
        assert f"alice has already approved task {task_id}" in again.json()["detail"]
        done = client.post(f"/tasks/{task_id}/approve", json={"reason": "ok"}, headers=bearer(bob))
        assert done.status_code == 200, done.text
        assert done.json()["state"] in ("approved", "published")
    assert approvals(rt, task_id) == [("alice", "alice"), ("bob", "bob")]


def test_the_service_refuses_a_second_approval_by_its_principal(
    two_approvals: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(two_approvals)
    task_id = waiting_task(rt)
    approve(rt, task_id, actor="bob")
    with pytest.raises(StateError, match=r"bob has already approved .* as carol is bob's again"):
        approve(rt, task_id, actor="carol", principal="bob")
    approve(rt, task_id, actor="carol")
    assert wait_for_state(rt, task_id, SETTLED) == "published"
