"""Watching what is live: the monitor's analysis on made-up numbers, its settings, and the
monitor itself against a real gateway on loopback (a handler that starts failing after its
promotion is caught and rolled back, or only alerted on)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from canary_support import Load, gateway, handler_project
from server.test_console import serving, sign_in
from shipyard.config import load_project, load_settings
from shipyard.errors import ConfigError
from shipyard.jobs import BatchRow
from shipyard.release import Arm, Bucket, ProbeTally, StaticSite, WatchRules, watch
from shipyard.server import Gateway, create_token
from shipyard.service import Runtime, find_task, incidents, monitors, releases, submit
from shipyard.store import AuditRow, ReleaseSampleRow, make_engine, migrate, session_factory
from support import SETTLED, run_cli, wait_for_state

RULES = WatchRules()  # 50 requests, +1% errors, 1.5x p95, 99% confidence, 3 probe failures


def traffic(
    start: float,
    seconds: int,
    *,
    rps: int = 20,
    error_rate: float = 0.0,
    ms: float = 10.0,
    slower: Callable[[int], float] = lambda second: 1.0,
    seed: int = 1,
) -> Arm:
    """``seconds`` of one-second buckets from ``start``, as the gateway records them."""
    rng = random.Random(seed)
    buckets = []
    for second in range(seconds):
        scale = slower(second)
        buckets.append(
            Bucket(
                at=start + second,
                requests=rps,
                errors=sum(rng.random() < error_rate for _ in range(rps)),
                latencies=[max(0.05, rng.gauss(ms * scale, ms / 10)) for _ in range(rps)],
            )
        )
    return Arm.of(buckets)


BASELINE = traffic(0, 600, error_rate=0.002, seed=2)
"""Ten minutes since promotion: 12,000 requests, 0.2 % errors, p95 about 11.6 ms."""


def test_a_rise_in_the_error_rate_is_an_anomaly_on_errors() -> None:
    health = watch(traffic(600, 60, error_rate=0.08, seed=3), BASELINE, RULES)

    assert health.outcome == "anomaly"
    [finding] = health.anomalies
    assert finding.cause == "errors"
    assert finding.reason.startswith("error rate ")
    assert "since promotion (12000 requests)" in finding.reason
    assert health.numbers["error_increase_low"] > RULES.max_error_rate_increase
    assert "errors" not in health.recovered


def test_the_same_rate_as_before_is_health_on_positive_evidence() -> None:
    health = watch(traffic(600, 60, error_rate=0.002, seed=4), BASELINE, RULES)

    assert health.outcome == "ok", health.reasons
    assert health.anomalies == ()
    assert {"errors", "latency"} <= health.recovered
    assert health.to_dict()["outcome"] == "ok"


def test_a_slowdown_of_the_whole_machine_is_not_an_anomaly() -> None:
    # Every live path is three times slower in the window: the path and the others at the
    # same moments. Measured against the others, the path has not changed.
    machine = lambda second: 3.0  # noqa: E731
    others = (
        traffic(600, 60, ms=5, slower=machine, seed=5),
        traffic(0, 600, ms=5, seed=6),
    )
    window = traffic(600, 60, error_rate=0.002, slower=machine, seed=7)

    health = watch(window, BASELINE, RULES, control=others)

    assert health.outcome == "ok", health.reasons
    assert health.numbers["p95_against"] == "other live paths"
    assert 0.8 < health.numbers["p95_ratio"] < 1.25
    assert "latency" in health.recovered
    # The same window without the others to compare with is slower than its baseline.
    alone = watch(window, BASELINE, RULES)
    assert [f.cause for f in alone.anomalies] == ["latency"]
    assert "cannot be told apart" in alone.anomalies[0].reason


def test_the_path_alone_getting_slower_is_an_anomaly_on_latency() -> None:
    others = (traffic(600, 60, ms=5, seed=5), traffic(0, 600, ms=5, seed=6))
    window = traffic(600, 60, error_rate=0.002, ms=30, seed=7)

    health = watch(window, BASELINE, RULES, control=others)

    [finding] = health.anomalies
    assert finding.cause == "latency"
    assert "against the other live paths at the same moments" in finding.reason
    assert health.numbers["p95_ratio_low"] > RULES.max_p95_ratio


def test_a_stall_of_a_few_seconds_alone_is_not_an_anomaly() -> None:
    # No other live path: ten seconds of the minute are five times slower (a stall). The
    # window's p95 is above the limit, but three of its four parts are not slower at all.
    stall = lambda second: 5.0 if 20 <= second < 30 else 1.0  # noqa: E731
    health = watch(traffic(600, 60, slower=stall, seed=8), BASELINE, RULES)

    assert health.anomalies == (), health.reasons
    assert health.numbers["p95_against"] == "baseline only"
    assert min(health.numbers["p95_parts"]) < RULES.max_p95_ratio


def test_thin_traffic_is_no_evidence_either_way() -> None:
    # Half of ten requests failed: too few to be an anomaly, and too few to be health.
    health = watch(traffic(600, 5, rps=2, error_rate=0.5, seed=9), BASELINE, RULES)

    assert health.outcome == "thin"
    assert health.anomalies == () and health.recovered == frozenset()
    assert "nothing to judge on traffic" in health.reasons[0]
    assert "error_increase_low" not in health.numbers


def test_a_path_without_a_baseline_is_judged_on_its_own_error_rate() -> None:
    young = traffic(0, 2, rps=5, seed=10)  # 10 requests since promotion: no baseline yet
    failing = watch(traffic(2, 10, error_rate=0.3, seed=11), young, RULES)
    fine = watch(traffic(2, 10, seed=12), young, RULES)

    assert [f.cause for f in failing.anomalies] == ["errors"]
    assert "with no baseline yet" in failing.anomalies[0].reason
    assert fine.outcome == "ok" and "latency not judged: no baseline yet" in fine.reasons


def test_probes_failing_in_a_row_are_an_anomaly_and_passing_again_recovers() -> None:
    tally = ProbeTally()
    for _ in range(RULES.probe_failures - 1):
        tally.record("GET /api/price/sku-1", "status 500, expected 200")
    waiting = watch(Arm(), BASELINE, RULES, probes=tally)
    tally.record("GET /api/price/sku-1", "status 500, expected 200")
    failed = watch(Arm(), BASELINE, RULES, probes=tally)
    tally.record("GET /api/price/sku-1", None)
    passing = watch(Arm(), BASELINE, RULES, probes=tally)

    assert waiting.anomalies == () and "waiting for its next result" in waiting.reasons[-1]
    assert [f.cause for f in failed.anomalies] == ["probe"]
    assert (
        "failed 3× in a row (last: GET /api/price/sku-1: status 500" in failed.anomalies[0].reason
    )
    assert passing.anomalies == () and passing.recovered == {"probe"}
    assert passing.outcome == "thin"  # no traffic: the verdict rests on the probes alone


# -- settings -----------------------------------------------------------------------------


def settings_of(tmp_path: Path, target: str) -> Path:
    path = tmp_path / "shipyard.toml"
    path.write_text(target)
    return path


def test_monitor_settings_default_on_for_served_targets_and_off_for_git(tmp_path: Path) -> None:
    settings = load_settings(
        settings_of(
            tmp_path,
            '[targets.site]\n[targets.api]\nkind = "http-handler"\n'
            '[targets.api.monitor]\non_anomaly = "rollback"\ninterval_seconds = 5\n'
            '[targets.rules]\nkind = "git"\nrepository = "r.git"\n',
        )
    )
    site, api, rules = (settings.targets[n].watching() for n in ("site", "api", "rules"))
    assert site is not None and site.on_anomaly == "alert" and site.interval_seconds == 30
    assert api is not None and api.on_anomaly == "rollback" and api.interval_seconds == 5
    assert rules is None


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('on_anomaly = "page"', "on_anomaly"),
        ("window_seconds = 10\ninterval_seconds = 30", "must be at least interval_seconds"),
        ("baseline_minutes = 1\nwindow_seconds = 120", "must cover at least the window"),
        ("max_p95_ratio = 0.5", "max_p95_ratio"),
        ("confidence = 1", "confidence"),
        ("every = 3", "every"),
    ],
)
def test_bad_monitor_settings_name_the_key(tmp_path: Path, table: str, expected: str) -> None:
    path = settings_of(
        tmp_path, f'[targets.api]\nkind = "http-handler"\n[targets.api.monitor]\n{table}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert expected in caught.value.message
    assert "targets.api.monitor" in caught.value.message


def test_a_git_target_refuses_a_monitor(tmp_path: Path) -> None:
    path = settings_of(
        tmp_path, '[targets.rules]\nkind = "git"\nrepository = "r.git"\n[targets.rules.monitor]\n'
    )
    with pytest.raises(ConfigError, match="a git target serves no traffic to watch"):
        load_settings(path)


# -- the monitor against a real gateway ---------------------------------------------------

MONITOR = {
    "interval_seconds": 0.5,
    "window_seconds": 3,
    "baseline_minutes": 1,
    "min_requests": 30,
    "probe_failures": 3,
    "max_p95_ratio": 20,
}
"""Rounds every half second over a three-second window, for the tests' patience. These
tests are about errors: a three-second window of the one live path has no other path to
tell a busy machine from a slow handler (a command starting beside it on two cores can slow
all of it), which the analysis's own tests cover."""
FINISHED = SETTLED | {"rolled_back"}


def price_rule(rt: Runtime, rule: str) -> str:
    row = BatchRow(where="test", data={"rule": rule, "price": 9.5, "delay_ms": 2, "fail_rate": 0})
    result = submit(rt, rt.jobs.get("price-rule"), [row], submitted_by="me")
    assert not result.rejected
    return result.submitted[0]


def published(rt: Runtime, rule: str) -> str:
    task_id = price_rule(rt, rule)
    state = wait_for_state(rt, task_id, FINISHED, timeout=120)
    assert state == "published", find_task(rt, task_id).error
    return task_id


def until(what: str, found: Callable[[], Any], timeout: float = 120) -> Any:
    """Poll ``found`` until it returns something true (fails naming ``what``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s; monitors: {monitors_now}")


monitors_now: list[dict[str, Any]] = []


def watched_with_a_baseline(rt: Runtime, task_id: str) -> bool:
    """The monitor judged ``task_id``'s path healthy against a baseline of its own."""
    monitors_now[:] = monitors(rt)
    for monitor in monitors_now:
        state = monitor["paths"].get("/api/price/", {})
        if (
            state.get("task") == task_id
            and state.get("outcome") == "ok"
            and state.get("baseline", {}).get("requests", 0) >= MONITOR["min_requests"]
        ):
            return True
    return False


def switch_to_failing(rt: Runtime, task_id: str, share: float) -> None:
    """From now on ``share`` of the live version's visitors' requests fail."""
    (rt.project.sites_dir / "api" / "versions" / task_id / "fault").write_text(str(share))


@pytest.fixture
def watched(tmp_path: Path, start_worker: Callable[..., Runtime], request: Any) -> Runtime:
    on_anomaly = request.param
    root = handler_project(tmp_path / "pricing", monitor={**MONITOR, "on_anomaly": on_anomaly})
    config = root / "shipyard.toml"
    config.write_text(config.read_text() + '\n[people.ops]\nroles = ["operator"]\n')
    return start_worker(load_project(root))


@pytest.mark.usefixtures("database")
@pytest.mark.parametrize("watched", ["rollback"], indirect=True)
def test_a_handler_failing_after_promotion_is_rolled_back_by_the_monitor(
    watched: Runtime,
) -> None:
    rt = watched
    with gateway(rt.project) as url, Load(url, ["/api/price/sku-1", "/api/price/sku-2"]) as load:
        first = published(rt, "v1")
        second = published(rt, "v2")  # replaces the first: the rollback's way back
        until("v2 watched with a baseline", lambda: watched_with_a_baseline(rt, second))
        switched = time.time()
        switch_to_failing(rt, second, 0.5)
        assert wait_for_state(rt, second, {"rolled_back"}, timeout=120)
        resolved = until(
            "the incident resolved",
            lambda: [i for i in incidents(rt) if i["task"] == second and i["state"] == "resolved"],
        )
        restored = releases(rt, task=second)[0]["restored_at"].timestamp()
        until(  # the version before starts again and answers
            "visitors served by v1 again",
            lambda: [h for h in load.hits if h.started > restored + 0.2 and h.version == first],
        )
        # The monitor goes on watching what is live now, without an incident of its own.
        until("v1 watched again", lambda: watched_with_a_baseline(rt, first))
        assert not incidents(rt, state="open")
    [incident] = resolved
    assert incident["cause"] == "errors" and incident["action"] == "rolled_back"
    assert incident["path"] == "/api/price/" and incident["target"] == "api"
    assert incident["reason"].startswith("error rate ")
    assert incident["resolved_by"] == "monitor" and "rolled back" in incident["resolution"]
    assert incident["evidence"]["outcome"] == "anomaly"
    assert (
        incident["evidence"]["window"]["error_rate"]
        > incident["evidence"]["baseline"]["error_rate"]
    )
    assert incident["time_to_recover_s"] is not None and incident["time_to_recover_s"] >= 0
    assert incident["detected_at"].timestamp() > switched

    [rolled] = releases(rt, task=second)
    assert rolled["state"] == "rolled_back"
    assert rolled["reason"].startswith("rolled back by the monitor: #")
    assert find_task(rt, second).state == "rolled_back"
    assert releases(rt, task=first)[0]["state"] == "live"  # the version before is back
    assert not [h for h in load.hits if h.started > restored + 0.2 and h.version == second]

    with rt.sessions() as session:
        audit = session.scalars(
            select(AuditRow).where(AuditRow.task_id == second).order_by(AuditRow.seq)
        ).all()
    trail = [(a.actor, a.action, a.decision) for a in audit if a.action in ("incident", "rollback")]
    assert trail == [
        ("monitor api", "incident", "opened"),
        ("monitor api", "rollback", "done"),
        ("monitor api", "incident", "resolved"),
    ]


@pytest.mark.usefixtures("database")
@pytest.mark.parametrize("watched", ["alert"], indirect=True)
def test_an_alert_only_monitor_opens_one_incident_and_resolves_it_on_recovery(
    watched: Runtime,
) -> None:
    rt = watched
    with gateway(rt.project) as url, Load(url, ["/api/price/sku-1"]):
        task_id = published(rt, "v1")
        until("v1 watched with a baseline", lambda: watched_with_a_baseline(rt, task_id))
        switch_to_failing(rt, task_id, 0.5)
        [opened] = until("an incident", lambda: incidents(rt, state="open"))
        time.sleep(3)  # several more rounds with the anomaly: still the one incident
        assert [i["id"] for i in incidents(rt)] == [opened["id"]]
        assert releases(rt, task=task_id)[0]["state"] == "live"
        assert find_task(rt, task_id).state == "published"

        switch_to_failing(rt, task_id, 0.0)  # the upstream came back
        [recovered] = until(
            "the incident resolved on recovery",
            lambda: [i for i in incidents(rt) if i["state"] == "resolved"],
        )

        # It fails again: a new incident, which a person closes; while the release keeps
        # failing the same way, the monitor opens no other.
        switch_to_failing(rt, task_id, 0.5)
        [again] = until("a second incident", lambda: incidents(rt, state="open"))
        token = create_token(rt, "ops", "operator", actor="ops")[1]
        closed = run_cli(
            rt.project.root, "incident", "resolve", str(again["id"]), "--as", "ops",
            "--note", "the upstream is being replaced", "--json",
            env={"SHIPYARD_TOKEN": token},
        )  # fmt: skip
        assert closed.returncode == 0, closed.stderr
        time.sleep(3)
        assert [i["id"] for i in incidents(rt)] == [again["id"], opened["id"]], incidents(rt)
        assert releases(rt, task=task_id)[0]["state"] == "live"
    assert opened["action"] == "alerted" and opened["cause"] == "errors"
    assert recovered["id"] == opened["id"] and recovered["resolved_by"] == "monitor"
    assert recovered["resolution"].startswith("recovered: 5xx ")
    assert recovered["time_to_recover_s"] > 0
    by_person = json.loads(closed.stdout)
    assert by_person["resolved_by"] == "ops" and by_person["state"] == "resolved"
    assert by_person["resolution"] == "the upstream is being replaced"

    # Every face tells the same story.
    listed = run_cli(rt.project.root, "incidents", "--json")
    assert [i["id"] for i in json.loads(listed.stdout)] == [again["id"], opened["id"]]
    shown = run_cli(rt.project.root, "incidents", "--open")
    assert shown.returncode == 0 and shown.stdout.strip() == "no open incidents"
    watching = json.loads(run_cli(rt.project.root, "monitors", "--json").stdout)
    assert [(m["target"], m["state"], m["on_anomaly"]) for m in watching] == [
        ("api", "watching", "alert")
    ]
    stats = json.loads(run_cli(rt.project.root, "stats", "--json").stdout)
    figures = {f["name"]: f for f in stats["figures"]}
    assert figures["incidents"]["value"] == 2
    mean = (recovered["time_to_recover_s"] + by_person["time_to_recover_s"]) / 2
    assert figures["incident mean time to recover"]["value"] == pytest.approx(mean, abs=0.01)
    with serving(rt) as admin:
        api = httpx.get(
            admin + "/api/v1/incidents",
            params={"state": "resolved", "limit": 1},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert api.status_code == 200, api.text
        assert [i["id"] for i in api.json()["items"]] == [again["id"]]
        assert api.json()["next_cursor"] == "1"
        page = sign_in(admin, token).get("/console/incidents")
        assert page.status_code == 200
        assert f'data-incident="{opened["id"]}"' in page.text and 'id="monitors"' in page.text


# -- what the gateway records for a monitor ---------------------------------------------------


def test_the_gateway_records_live_pages_for_their_releases_when_watched(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'shipyard.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    site = StaticSite("storefront", tmp_path / "site")
    site.publish(key="task-mug", path="products/mug", files={"index.html": b"<p>mug</p>"})
    site.publish(key="task-cup", path="products/cup", files={"index.html": b"<p>cup</p>"})
    token = "probe-token-for-tests"

    async def visit(app: Gateway) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            for _ in range(3):
                assert (await client.get("/products/mug/")).status_code == 200
            assert (await client.get("/products/cup/index.html")).status_code == 200
            assert (await client.get("/products/none/")).status_code == 404  # nobody's page
            probe = {"X-Shipyard-Probe": token, "X-Shipyard-Arm": "baseline"}
            assert (await client.get("/products/cup/", headers=probe)).status_code == 200

    def recorded(watched: list[str]) -> list[tuple[str, str, int]]:
        app = Gateway(site=site, sessions=sessions, probe_token=token, isolate=False,
                      watched=watched)  # fmt: skip
        asyncio.run(visit(app))
        app.recorder.flush()
        with sessions() as session:
            rows = session.scalars(select(ReleaseSampleRow).order_by(ReleaseSampleRow.task_id))
            found = [(r.task_id, r.arm, r.requests) for r in rows]
            session.execute(delete(ReleaseSampleRow))
            session.commit()
        return found

    assert recorded([]) == []  # no monitor watches the site: nothing is kept
    # The probe is not traffic; the page nobody released belongs to no release.
    assert recorded(["storefront"]) == [("task-cup", "live", 1), ("task-mug", "live", 3)]
