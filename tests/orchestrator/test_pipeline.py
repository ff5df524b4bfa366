"""The task pipeline end to end, in process, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from shipyard.config import Project
from shipyard.errors import PolicyDenied, ProviderError, StateError
from shipyard.generate import render
from shipyard.jobs import BatchRow, read_batch, validate_inputs
from shipyard.service import (
    Runtime,
    approve,
    list_tasks,
    reject,
    shutdown,
    submit,
    task_story,
)
from shipyard.store import MemoryRow, ReleaseRow
from shipyard.testing import ScriptedProvider
from support import PRODUCT, SETTLED, wait_for_state, wait_until_finished


def _one(rt: Runtime, job: str, data: dict[str, str], by: str = "shop-owner") -> str:
    result = submit(rt, rt.jobs.get(job), [BatchRow(where="test", data=data)], submitted_by=by)
    assert not result.rejected, result.rejected
    return result.submitted[0]


def _page(rt: Runtime, task_id: str) -> str:
    """The generated page of the task's latest attempt."""
    return str(task_story(rt, task_id).attempts[-1].files["index.html"])


def test_batch_with_bad_rows_publishes_the_rest_after_approval(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    rows = list(read_batch(project.root / "products.csv"))
    result = submit(rt, rt.jobs.get("landing-page"), rows, submitted_by="shop-owner")

    # The two bad rows are refused at the door, each naming its row and field.
    assert len(result.rejected) == 2
    assert len(result.submitted) == len(rows) - 2
    messages = sorted(r.message for r in result.rejected)
    assert any("row 7" in m and "'price'" in m for m in messages), messages
    assert any("row 14" in m and "'shipping_weight_kg'" in m for m in messages), messages
    for bad in result.rejected:
        story = task_story(rt, bad.task_id)
        assert story.task.state == "invalid" and not story.steps and not story.attempts

    states = {t: wait_for_state(rt, t, SETTLED) for t in result.submitted}
    assert set(states.values()) == {"waiting_approval"}

    chosen, refused = result.submitted[0], result.submitted[1]
    approve(rt, chosen, actor="demo-operator", reason="looks right")
    reject(rt, refused, actor="demo-operator", reason="wrong hero image")
    assert wait_until_finished(rt, chosen) == "published"
    assert wait_until_finished(rt, refused) == "rejected"

    story = task_story(rt, chosen)
    stages = [s.stage for s in story.steps]
    assert stages == [
        "validate", "recall", "generate", "verify", "register", "gate", "approval",
        "release", "remember",
    ]  # fmt: skip
    assert all(s.status == "done" and s.runs == 1 for s in story.steps)
    assert story.provenance is not None
    record = story.provenance.record
    assert record["approvals"][0]["actor"] == "demo-operator"
    assert record["template_hash"].startswith("sha256:")
    assert record["provider"] == "template"
    assert story.release is not None and story.release.state == "live"

    # The page is live on the site; the rejected one is not.
    site = rt.target("storefront-site").live_dir()
    assert site is not None
    sku = story.task.inputs["sku"].lower()
    assert (site / "products" / sku / "index.html").read_text() == _page(rt, chosen)
    rejected_sku = task_story(rt, refused).task.inputs["sku"].lower()
    assert not (site / "products" / rejected_sku).exists()
    with rt.sessions() as session:
        assert session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == refused)) is None
        memory = session.scalar(select(MemoryRow).where(MemoryRow.task_id == refused))
    assert memory is not None and "wrong hero image" in memory.text


def test_repair_loop_feeds_findings_back_until_the_checks_pass(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    bad_page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>x</title></head>"
        "<body><img src='/a.jpg'></body></html>"
    )
    kind = Runtime.open(project).jobs.get("landing-page")
    inputs = validate_inputs(kind, PRODUCT, where="test")
    good_page = render(kind.outputs["index.html"], inputs, name="index.html", where="test")

    provider = ScriptedProvider([{"index.html": bad_page}, {"index.html": good_page}])
    rt = start_worker(project, provider)
    task_id = _one(rt, "landing-page", PRODUCT)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"

    story = task_story(rt, task_id)
    assert [a.passed for a in story.attempts] == [False, True]
    fed_back = story.attempts[1].feedback
    assert any(f["rule"] == "html.img-alt" for f in fed_back), fed_back
    # The second prompt carried the findings and the previous code to the generator.
    second = provider.requests[1]
    assert second.attempt == 2 and second.previous_files == {"index.html": bad_page}
    assert any(f.rule == "html.img-alt" for f in second.feedback)
    assert "html.img-alt" in second.prompt


def test_exhausted_attempts_fail_the_task_and_nothing_is_stored(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    broken = {"index.html": "<p>no doctype, no title, no JSON-LD"}
    rt = start_worker(project, ScriptedProvider([broken]))
    task_id = _one(rt, "landing-page", PRODUCT)
    assert wait_for_state(rt, task_id, SETTLED) == "failed"
    story = task_story(rt, task_id)
    kind = rt.jobs.get("landing-page")
    assert len(story.attempts) == kind.max_attempts
    assert story.provenance is None and story.release is None
    assert story.task.artifact_id == ""


def test_a_provider_that_keeps_failing_hands_the_task_to_a_person(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    provider = ScriptedProvider([ProviderError("model server unreachable")])
    rt = start_worker(project, provider)
    task_id = _one(rt, "landing-page", PRODUCT)
    assert wait_for_state(rt, task_id, SETTLED, timeout=90) == "waiting_input"
    assert len(provider.requests) == 3  # tries_per_call, with backoff between
    [attempt] = task_story(rt, task_id).attempts
    assert (attempt.tier, attempt.provider, attempt.files) == ("human", "human", {})
    assert "template failed: model server unreachable" in attempt.route
    assert "a person is asked for the code" in attempt.route


def test_a_permanent_provider_error_is_not_retried(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    refused = ProviderError("invalid API key", details={"status": 401})
    provider = ScriptedProvider([refused])
    rt = start_worker(project, provider)
    task_id = _one(rt, "landing-page", PRODUCT)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_input"
    assert len(provider.requests) == 1
    assert "invalid API key" in task_story(rt, task_id).attempts[0].route


def test_work_recorded_but_never_enqueued_is_picked_up_by_the_next_worker(
    project: Project, start_worker: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.open(project)
    lost = RuntimeError("the process died between recording and enqueueing")

    def die(*args: object) -> None:
        raise lost

    with monkeypatch.context() as patch:
        patch.setattr("shipyard.orchestrator._queues._enqueue", die)
        with pytest.raises(RuntimeError):
            submit(
                rt,
                rt.jobs.get("landing-page"),
                [BatchRow(where="t", data=PRODUCT)],
                submitted_by="a",
            )
    rt.close()
    (task,) = [t.id for t in list_tasks(Runtime.open(project), states=["queued"])]

    rt = start_worker(project)  # launching finds the queued task and enqueues it
    assert wait_for_state(rt, task, SETTLED) == "waiting_approval"


def test_gate_rules_self_approval_and_state(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    task_id = _one(rt, "landing-page", PRODUCT, by="alice")
    wait_for_state(rt, task_id, SETTLED)
    with pytest.raises(PolicyDenied, match="cannot also approve"):
        approve(rt, task_id, actor="alice")
    approve(rt, task_id, actor="bob")
    with pytest.raises(StateError, match="not waiting for approval"):
        approve(rt, task_id, actor="carol")
    assert wait_for_state(rt, task_id, {"published"}) == "published"


def test_waiting_task_survives_a_restart(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    task_id = _one(rt, "landing-page", PRODUCT)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    shutdown()  # the worker goes away while the task waits
    approve(rt, task_id, actor="demo-operator")
    rt = start_worker(project)  # a new worker recovers the waiting workflow
    assert wait_for_state(rt, task_id, {"published"}) == "published"
    story = task_story(rt, task_id)
    assert [s.runs for s in story.steps if s.stage == "generate"] == [1]
