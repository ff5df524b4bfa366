"""Watching what is live: the monitor's analysis on made-up numbers, its settings, and the
monitor itself against a real gateway on loopback (a handler that starts failing after its
promotion is caught and rolled back, or only alerted on)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from shipyard.config import load_settings
from shipyard.errors import ConfigError
from shipyard.release import Arm, Bucket, ProbeTally, WatchRules, watch

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
