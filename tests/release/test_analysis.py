"""Canary analysis on made-up numbers: what fails a stage, what passes it, and when."""

from __future__ import annotations

import random

import pytest

from shipyard.release import Arm, BakeClock, Bucket, ProbeTally, Rules, analyse


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


def test_thin_traffic_without_probes_fails_past_the_longest_bake() -> None:
    verdict = analyse(arm(30), arm(300), RULES, probes=None, baked=True, overdue=True)

    assert verdict.outcome == "fail"
    assert verdict.reasons == ("only 30 of 100 candidate requests and no probes to go on",)


def test_thin_traffic_before_any_probe_result_waits_past_the_longest_bake() -> None:
    verdict = analyse(arm(0), arm(0), RULES, probes=ProbeTally(), baked=True, overdue=True)

    assert verdict.outcome == "wait"
    assert verdict.reasons == ("only 0 of 100 candidate requests; waiting for a probe to pass",)


def test_thin_traffic_past_the_longest_bake_needs_probe_failures_in_a_row() -> None:
    # The reported case: no traffic, past max_bake_seconds, one probe slow on a busy machine.
    # One slow reply is not the two in a row that fail a probe: the stage waits for the next.
    probes = ProbeTally()
    probes.record("GET /products/sku-1/", "took 2444 ms (limit 1000 ms)")

    once = analyse(arm(0), arm(0), RULES, probes=probes, baked=True, overdue=True)
    probes.record("GET /products/sku-1/", None)
    recovered = analyse(arm(0), arm(0), RULES, probes=probes, baked=True, overdue=True)
    probes.record("GET /products/sku-1/", "took 2100 ms (limit 1000 ms)")
    probes.record("GET /products/sku-1/", "took 2300 ms (limit 1000 ms)")
    twice = analyse(arm(0), arm(0), RULES, probes=probes, baked=True, overdue=True)

    assert once.outcome == "wait", once.reasons
    assert once.reasons[0].startswith(
        "only 0 of 100 candidate requests; probe GET /products/sku-1/ (1 of 2) failing in a row"
    )
    assert once.reasons[0].endswith("waiting for its next result")
    assert recovered.outcome == "pass"
    assert recovered.reasons == ("only 0 of 100 candidate requests: decided on 1 passing probes",)
    assert twice.outcome == "fail"
    assert twice.reasons[0].startswith("probe GET /products/sku-1/ failed 2× in a row")


def test_the_bake_clock_counts_only_the_time_a_worker_watched() -> None:
    clock = BakeClock(looked_at=1000.0)  # the stage began at 1000 s; looks every 0.5 s
    for n in range(1, 5):
        clock = clock.look(1000.0 + 0.5 * n, interval=0.5)
    assert clock.baked_s == pytest.approx(2.0)

    # The worker was stopped for an hour: the look after it counts at most three intervals.
    clock = clock.look(1002.0 + 3600, interval=0.5)
    assert clock.baked_s == pytest.approx(3.5)
    assert clock.looked_at == 1002.0 + 3600

    # Looks that come late on a busy machine still move it on, by what they watched.
    clock = clock.look(clock.looked_at + 1.2, interval=0.5)
    assert clock.baked_s == pytest.approx(4.7)

    # A clock read back after a repeated step never runs backwards.
    assert clock.look(clock.looked_at - 5, interval=0.5) == BakeClock(
        baked_s=clock.baked_s, looked_at=clock.looked_at
    )


def test_an_hour_unwatched_makes_no_stage_overdue() -> None:
    bake, longest = 2.0, 4.0
    clock = BakeClock(looked_at=0.0).look(3600.0, interval=0.5)  # the first look, an hour on
    probes = ProbeTally()
    probes.record("GET /", "took 2444 ms (limit 1000 ms)")

    verdict = analyse(
        arm(0), arm(0), RULES, probes=probes,
        baked=clock.baked_s >= bake, overdue=clock.baked_s >= longest,
    )  # fmt: skip

    assert clock.baked_s == 1.5
    assert verdict.outcome == "wait"
    assert verdict.reasons == ("baking",)


def buckets(
    shapes: list[tuple[int, int, float]], *, scale: float = 1.0, seed: int = 3
) -> list[Bucket]:
    """A bucket per (requests, latencies kept, mean ms), a second apart; latencies x scale."""
    rng = random.Random(seed)
    return [
        Bucket(
            at=1000.0 + n,
            requests=requests,
            latencies=[scale * max(0.1, rng.gauss(ms, ms / 10)) for _ in range(kept)],
        )
        for n, (requests, kept, ms) in enumerate(shapes)
    ]


# Twenty-nine ordinary seconds at 10 ms, then one in which the whole machine slowed to 40 ms
# while traffic spiked. The gateway keeps at most 1000 latencies per arm and second, so the
# baseline's sample of that second is 1000 of 8000 requests, the candidate's 1000 of 2000.
BASELINE_SECONDS = [(1000, 1000, 10.0)] * 29 + [(8000, 1000, 40.0)]
CANDIDATE_SECONDS = [(250, 250, 10.0)] * 29 + [(2000, 1000, 40.0)]


def test_a_slowdown_of_both_arms_does_not_fail_a_good_candidate() -> None:
    candidate = Arm.of(buckets(CANDIDATE_SECONDS, seed=1))
    baseline = Arm.of(buckets(BASELINE_SECONDS, seed=2))
    pooled = Arm(requests=candidate.requests, latencies=candidate.latencies)
    pooled_baseline = Arm(requests=baseline.requests, latencies=baseline.latencies)

    verdict = analyse(candidate, baseline, RULES, baked=True)
    naive = analyse(pooled, pooled_baseline, RULES, baked=True)

    # Pooled, the slow second is 12 % of the candidate's sample and 3 % of the baseline's:
    # the candidate looked three times slower than the same software on the same machine.
    assert naive.outcome == "fail" and naive.numbers["p95_ratio_low"] > 2
    assert verdict.outcome == "pass", verdict.reasons
    assert verdict.numbers["p95_windows"] == 30
    assert 0.8 < verdict.numbers["p95_ratio"] < 1.25


def test_a_tripled_p95_fails_in_the_same_windows_through_a_slowdown() -> None:
    candidate = Arm.of(buckets(CANDIDATE_SECONDS, scale=3.0, seed=1))
    baseline = Arm.of(buckets(BASELINE_SECONDS, seed=2))

    verdict = analyse(candidate, baseline, RULES, baked=False)

    assert verdict.outcome == "fail"
    assert verdict.numbers["p95_ratio_low"] > 2.5
    assert verdict.reasons[0].startswith("p95 latency")
    assert "in the same 30 windows: at least" in verdict.reasons[0]


def slowed(ms: float, *, seconds: int = 30, slow: tuple[int, ...] = (9, 10, 21), seed: int) -> Arm:
    """An arm at ``ms`` a request, with every latency of the ``slow`` seconds 50 ms later
    (the whole machine stalled), 100 requests a second."""
    rng = random.Random(seed)
    return Arm.of(
        [
            Bucket(
                at=2000.0 + n,
                requests=100,
                latencies=[rng.gauss(ms, ms / 10) + (50 if n in slow else 0) for _ in range(100)],
            )
            for n in range(seconds)
        ]
    )


def test_a_slowdown_of_both_arms_does_not_hide_a_p95_one_and_a_half_times_slower() -> None:
    rules = Rules(max_p95_ratio=1.25)
    candidate, baseline = slowed(15, seed=1), slowed(10, seed=2)
    pooled = Arm(requests=candidate.requests, latencies=candidate.latencies)
    pooled_baseline = Arm(requests=baseline.requests, latencies=baseline.latencies)

    verdict = analyse(candidate, baseline, rules, baked=False)
    naive = analyse(pooled, pooled_baseline, rules, baked=False)

    # Three stalled seconds in thirty put both pooled p95s in the stall (65 vs 60 ms) ...
    assert naive.outcome == "wait" and naive.numbers["p95_ratio"] < 1.15
    # ... while second by second the candidate is 1.5x slower in 27 of them.
    assert verdict.outcome == "fail", verdict.numbers
    assert verdict.numbers["p95_windows"] == 30
    assert verdict.numbers["p95_ratio_low"] > 1.25


def test_windows_gather_buckets_until_each_arm_has_twenty_latencies() -> None:
    # 3 candidate latencies a second: a window is 7 seconds; the 2 seconds left join the last.
    baseline = Arm.of([Bucket(at=float(n), requests=12, latencies=[10.0] * 12) for n in range(30)])
    candidate = Arm.of([Bucket(at=float(n), requests=3, latencies=[10.0] * 3) for n in range(30)])

    verdict = analyse(candidate, baseline, RULES, baked=True)

    assert verdict.numbers["p95_windows"] == 4
    assert verdict.numbers["p95_ratio"] == 1.0
    assert verdict.outcome == "wait"  # 90 of 100 candidate requests, and nothing wrong


def test_only_the_windows_both_arms_were_measured_in_are_compared() -> None:
    # The baseline's first three seconds, before the candidate took traffic, were slow.
    baseline = Arm.of(buckets([(300, 300, 80.0)] * 3 + [(300, 300, 10.0)] * 5, seed=2))
    early = baseline.buckets[3:]
    candidate = Arm.of([Bucket(at=b.at, requests=75, latencies=b.latencies[:75]) for b in early])

    verdict = analyse(candidate, baseline, RULES, baked=True)

    assert verdict.numbers["p95_windows"] == 5
    assert verdict.numbers["p95_ratio"] == pytest.approx(1.0, abs=0.15)
    assert verdict.outcome == "pass", verdict.reasons


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
