"""Canary analysis on made-up numbers: what fails a stage, what passes it, and when."""

from __future__ import annotations

import random

import pytest

from shipyard.release import Arm, ProbeTally, Rules, analyse


def latencies(mean_ms: float, spread_ms: float, n: int, *, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [max(0.01, rng.gauss(mean_ms, spread_ms)) for _ in range(n)]


def arm(requests: int, errors: int = 0, *, ms: float = 10.0, seed: int = 7) -> Arm:
    return Arm(
        requests=requests,
        errors=errors,
        latencies=latencies(ms, ms / 10, min(requests, 1000), seed=seed),
    )


RULES = Rules()  # min_requests 100, +1% errors, 1.5x p95, 95% confidence, 2 probe failures


def test_equal_arms_with_enough_traffic_pass_only_once_baked() -> None:
    candidate, baseline = arm(200, 2, seed=1), arm(800, 8, seed=2)

    baking = analyse(candidate, baseline, RULES, baked=False)
    done = analyse(candidate, baseline, RULES, baked=True)

    assert baking.outcome == "wait"
    assert baking.reasons == ("baking",)
    assert done.outcome == "pass"
    assert "200 candidate requests" in done.reasons[0]
    assert done.numbers["candidate"]["requests"] == 200
    assert done.numbers["baseline"]["error_rate"] == 0.01


def test_a_20_percent_error_rate_against_none_fails_without_waiting_for_the_bake() -> None:
    candidate, baseline = arm(60, 12, seed=1), arm(300, 0, seed=2)

    verdict = analyse(candidate, baseline, RULES, baked=False)

    assert verdict.outcome == "fail"
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("error rate 20.0% vs baseline 0.0%")
    assert verdict.numbers["error_increase_low"] > RULES.max_error_rate_increase
    assert verdict.to_dict()["outcome"] == "fail"
    assert verdict.to_dict()["reasons"] == list(verdict.reasons)


def test_too_few_candidate_requests_are_no_grounds_for_failure() -> None:
    # Ten requests, half of them errors: not yet evidence (fewer than 20 candidate requests).
    verdict = analyse(arm(10, 5), arm(300), RULES, baked=False)

    assert verdict.outcome == "wait"
    assert "error_increase_low" not in verdict.numbers


def test_one_percent_against_point_eight_is_noise() -> None:
    candidate, baseline = arm(1000, 10, seed=1), arm(5000, 40, seed=2)

    verdict = analyse(candidate, baseline, RULES, baked=True)

    assert verdict.outcome == "pass", verdict.reasons
    assert verdict.numbers["error_increase_low"] <= RULES.max_error_rate_increase


def test_a_tripled_p95_fails_on_latency() -> None:
    candidate = Arm(requests=200, latencies=latencies(30, 3, 200, seed=1))
    baseline = Arm(requests=200, latencies=latencies(10, 1, 200, seed=2))

    verdict = analyse(candidate, baseline, RULES, baked=False)

    assert verdict.outcome == "fail"
    assert verdict.numbers["p95_ratio"] > 2.5
    assert verdict.numbers["p95_ratio_low"] > RULES.max_p95_ratio
    assert any(r.startswith("p95 latency") for r in verdict.reasons), verdict.reasons
    assert not any("error rate" in r for r in verdict.reasons)


def test_a_sub_millisecond_p95_difference_never_fails() -> None:
    candidate = Arm(requests=500, latencies=latencies(0.6, 0.05, 500, seed=1))
    baseline = Arm(requests=500, latencies=latencies(0.2, 0.02, 500, seed=2))

    verdict = analyse(candidate, baseline, RULES, baked=True)

    # The ratio alone would fail it; the floor is what keeps it.
    assert verdict.numbers["p95_ratio_low"] > RULES.max_p95_ratio
    assert verdict.outcome == "pass", verdict.reasons


def test_the_same_numbers_give_the_same_verdict() -> None:
    candidate = Arm(requests=300, errors=3, latencies=latencies(12, 4, 300, seed=1))
    baseline = Arm(requests=300, errors=2, latencies=latencies(10, 4, 300, seed=2))

    first = analyse(candidate, baseline, RULES, baked=True)
    again = analyse(
        Arm(requests=300, errors=3, latencies=tuple(candidate.latencies)),
        Arm(requests=300, errors=2, latencies=list(baseline.latencies)),
        RULES,
        baked=True,
    )

    assert first.numbers["p95_ratio_low"] == again.numbers["p95_ratio_low"]
    assert first == again


def test_thin_traffic_waits_for_the_longest_bake() -> None:
    verdict = analyse(arm(30), arm(300), RULES, probes=ProbeTally(passed=3), baked=True)

    assert verdict.outcome == "wait"
    assert verdict.reasons == ("only 30 of 100 candidate requests: waiting for traffic",)


def test_thin_traffic_past_the_longest_bake_proceeds_on_passing_probes() -> None:
    probes = ProbeTally(passed=3)

    verdict = analyse(arm(30), arm(300), RULES, probes=probes, baked=True, overdue=True)

    assert verdict.outcome == "pass"
    assert "3 passing probes" in verdict.reasons[0]
    assert verdict.numbers["probes"]["passed"] == 3


def test_thin_traffic_past_the_longest_bake_fails_when_told_to_roll_back() -> None:
    rules = Rules(low_traffic="rollback")

    verdict = analyse(
        arm(30), arm(300), rules, probes=ProbeTally(passed=3), baked=True, overdue=True
    )

    assert verdict.outcome == "fail"
    assert "by the longest bake" in verdict.reasons[0]


@pytest.mark.parametrize("probes", [None, ProbeTally(), ProbeTally(failed=1, streak={"/": 1})])
def test_thin_traffic_without_a_passing_probe_fails(probes: ProbeTally | None) -> None:
    verdict = analyse(arm(30), arm(300), RULES, probes=probes, baked=True, overdue=True)

    assert verdict.outcome == "fail"
    assert "no passing probe" in verdict.reasons[0]


def test_a_probe_failing_twice_in_a_row_fails_the_stage() -> None:
    probes = ProbeTally()
    probes.record("/products/sku-1/", "status 500")
    probes.record("/products/sku-1/", None)
    probes.record("/products/sku-1/", "status 500")  # the pass in between reset the streak
    probes.record("/", None)

    once = analyse(arm(200), arm(200), RULES, probes=probes, baked=True)
    probes.record("/products/sku-1/", "timed out")
    twice = analyse(arm(200), arm(200), RULES, probes=probes, baked=False)

    assert once.outcome == "pass"
    assert twice.outcome == "fail"
    assert twice.reasons == (
        "probe /products/sku-1/ failed 2× in a row (last: /products/sku-1/: timed out)",
    )
    assert twice.numbers["probes"]["streak"] == {"/products/sku-1/": 2, "/": 0}


def test_probe_tally_round_trips_through_a_dict() -> None:
    probes = ProbeTally()
    probes.record("a", None)
    probes.record("b", "boom")
    probes.record("b", "bang")

    data = probes.to_dict()
    back = ProbeTally.from_dict(data)

    assert back == probes
    assert data == {"passed": 1, "failed": 2, "streak": {"a": 0, "b": 2}, "last_error": "b: bang"}
    assert ProbeTally.from_dict({}) == ProbeTally()
    data["streak"]["a"] = 9  # a copy, not the tally's own
    assert probes.streak["a"] == 0
