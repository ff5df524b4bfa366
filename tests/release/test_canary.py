"""Canary rollouts end to end: real HTTP traffic on loopback through the gateway, the
durable controller in an in-process worker, and its verdicts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from canary_support import Load, gateway, handler_project
from shipyard.config import load_project
from shipyard.jobs import BatchRow
from shipyard.service import Runtime, approve, find_task, releases, steer, submit
from shipyard.store import AuditRow, ReleaseRow
from support import PRODUCT, SETTLED, copy_example, wait_for_state

FINISHED = SETTLED | {"rolled_back"}

pytestmark = pytest.mark.usefixtures("database")


def price_rule(rt: Runtime, rule: str, *, delay_ms: float, fail_rate: float = 0.0) -> str:
    row = BatchRow(
        where="test",
        data={"rule": rule, "price": 9.5, "delay_ms": delay_ms, "fail_rate": fail_rate},
    )
    result = submit(rt, rt.jobs.get("price-rule"), [row], submitted_by="me")
    assert not result.rejected
    return result.submitted[0]


def release_of(rt: Runtime, task_id: str) -> dict[str, Any]:
    found = releases(rt, task=task_id)
    assert found, f"no release for {task_id}"
    return found[0]


def at(moment: datetime | None) -> float:
    assert moment is not None
    return moment.timestamp()


@pytest.fixture
def pricing(tmp_path: Path, start_worker: Callable[..., Runtime]) -> Runtime:
    return start_worker(load_project(handler_project(tmp_path / "pricing")))


def test_handler_rollout_promotes_a_good_version_and_rolls_back_one_that_errs(
    pricing: Runtime,
) -> None:
    rt = pricing
    with gateway(rt.project) as url, Load(url, ["/api/price/sku-1", "/api/price/sku-2"]) as load:
        good = price_rule(rt, "v1", delay_ms=2)
        assert wait_for_state(rt, good, FINISHED, timeout=90) == "published", find_task(
            rt, good
        ).error
        release = release_of(rt, good)
        assert release["state"] == "live"
        assert [v["outcome"] for v in release["verdicts"]] == ["pass", "pass"]
        assert [v["weight"] for v in release["verdicts"]] == [20, 50]

        bad = price_rule(rt, "v2", delay_ms=2, fail_rate=0.2)
        assert wait_for_state(rt, bad, FINISHED, timeout=90) == "rolled_back"
        time.sleep(0.5)  # requests in flight at the switch finish on whichever arm they had
    release = release_of(rt, bad)
    assert release["state"] == "rolled_back"
    first = release["verdicts"][0]
    assert first["weight"] == 20 and first["outcome"] == "fail", release["verdicts"]
    assert "error rate" in release["reason"]
    assert first["candidate"]["error_rate"] > first["baseline"]["error_rate"]
    assert release["time_to_recover_ms"] is not None and release["time_to_recover_ms"] < 1000

    restored = at(releases(rt, task=bad)[0]["restored_at"])
    reached = [h for h in load.hits if h.version == bad]
    assert reached, "the bad candidate never took traffic"
    assert all(h.started < restored for h in reached), "a request after the rollback reached it"
    assert any(h.started > restored and h.version == good for h in load.hits)
    with rt.sessions() as session:
        audit = session.scalars(
            select(AuditRow).where(AuditRow.task_id == bad, AuditRow.action == "rollback")
        ).all()
    assert audit and "error rate" in audit[0].reason
    assert audit[0].detail["recovered_ms"] == release["time_to_recover_ms"]


def test_a_slow_handler_is_rolled_back_on_its_p95(pricing: Runtime) -> None:
    # The gateway measures what a visitor waits: the handler's time plus the gateway's and the
    # scheduler's, which on a busy 2-core machine add 5-20 ms to both arms alike and squeeze a
    # 10 ms -> 30 ms handler to about 1.5x at the p95 (a coin toss against the 1.5x limit).
    # A 5 ms -> 80 ms handler stays several times slower however busy the machine is.
    rt = pricing
    with gateway(rt.project) as url, Load(url, ["/api/price/sku-1"]):
        baseline = price_rule(rt, "v1", delay_ms=5)
        assert wait_for_state(rt, baseline, FINISHED, timeout=90) == "published"
        slow = price_rule(rt, "v2", delay_ms=80)
        assert wait_for_state(rt, slow, FINISHED, timeout=90) == "rolled_back"
    release = release_of(rt, slow)
    assert "p95 latency" in release["reason"]
    assert "in the same" in release["reason"]  # both arms over the same windows
    failed = release["verdicts"][-1]
    assert failed["outcome"] == "fail" and failed["p95_ratio_low"] > 1.5
    assert failed["p95_windows"] >= 1


def test_a_good_page_goes_through_every_stage_and_stays_sticky(
    tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    project = load_project(copy_example(tmp_path / "shop", canary=True))
    rt = start_worker(project)
    with gateway(project) as url, Load(url, ["/products/sku-101/"], threads=2) as load:
        result = submit(
            rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)],
            submitted_by="shop-owner",
        )  # fmt: skip
        task_id = result.submitted[0]
        assert wait_for_state(rt, task_id, FINISHED, timeout=60) == "waiting_approval"
        approve(rt, task_id, actor="demo-operator")
        assert wait_for_state(rt, task_id, FINISHED, timeout=90) == "published"
    release = release_of(rt, task_id)
    assert [(v["weight"], v["outcome"]) for v in release["verdicts"]] == [
        (20, "pass"),
        (50, "pass"),
    ]
    assert all(v["probes"]["failed"] == 0 and v["probes"]["passed"] for v in release["verdicts"])
    # Each visitor saw the candidate from the moment they were first sent to it until it
    # was promoted: a visitor on the candidate never went back to the old version.
    promoted = at(release["finished_at"])
    by_visitor: dict[str, list[str]] = {}
    for hit in sorted(load.hits, key=lambda h: h.started):
        if hit.started < promoted - 0.5:
            by_visitor.setdefault(hit.visitor, []).append(hit.version)
    candidate = f"candidate {task_id}"
    switched = [v for v in by_visitor.values() if candidate in v]
    assert switched
    for versions in switched:
        assert all(v == candidate for v in versions[versions.index(candidate) :])


def test_a_paused_rollout_holds_its_stage_until_resumed(pricing: Runtime) -> None:
    rt = pricing
    with gateway(rt.project) as url, Load(url, ["/api/price/sku-1"]):
        task_id = price_rule(rt, "v1", delay_ms=1)
        deadline = time.monotonic() + 30
        while release_state(rt, task_id) != "canary":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        steer(rt, task_id, "pause", actor="ops")
        deadline = time.monotonic() + 10
        while release_state(rt, task_id) != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(5)  # longer than a stage's bake: it must not move on
        release = release_of(rt, task_id)
        assert release["state"] == "paused" and release["reason"] == "paused by ops"
        assert rt.jobs and find_state(rt, task_id) == "releasing"
        steer(rt, task_id, "resume", actor="ops")
        assert wait_for_state(rt, task_id, FINISHED, timeout=60) == "published"
    with pytest.raises(Exception, match="cannot be paused"):
        steer(rt, task_id, "pause", actor="ops")


def release_state(rt: Runtime, task_id: str) -> str:
    with rt.sessions() as session:
        row = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
        return row.state if row is not None else ""


def find_state(rt: Runtime, task_id: str) -> str:
    from shipyard.service import find_task

    return find_task(rt, task_id).state
