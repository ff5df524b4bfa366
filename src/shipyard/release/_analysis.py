"""Canary analysis: is the candidate worse than the baseline, and how sure are we?

Each stage compares what the gateway measured on the two arms over the same window:

- **Errors.** The candidate fails when the lower confidence bound of (candidate 5xx rate
  minus baseline 5xx rate) is above ``max_error_rate_increase``. The bound is the
  Agresti–Caffo interval (add one error and one success to each arm), which stays honest on
  small samples and when an arm has no errors at all.
- **Latency.** The candidate fails when the lower confidence bound of (candidate p95 over
  baseline p95) is above ``max_p95_ratio``. The two p95s are compared window by window over
  the gateway's time buckets both arms have samples in, so a slowdown of the whole machine
  lands on both sides of each ratio (``_latency.compare_p95``). A p95 less than a
  millisecond above the baseline's never fails.
- **Probes.** A probe that fails ``probe_failures`` times in a row fails the stage.

A stage fails as soon as the evidence is significant (no need to wait out the bake); it
passes only at the end of its bake with at least ``min_requests`` candidate requests, or
with fewer when the traffic stayed thin past the longest bake, the rollout is told to
proceed, and the probes' latest results all passed. The bake is a ``BakeClock``: it counts
only the time a worker watched the stage, so a stopped worker never makes a stage baked or
overdue. Nothing is decided on an absence of evidence: a probe that failed fewer than
``probe_failures`` times in a row makes a thin stage wait for its next result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from shipyard.release._latency import Bucket, compare_p95

__all__ = ["Arm", "BakeClock", "Bucket", "ProbeTally", "Rules", "Verdict", "analyse"]

_FAIL_AFTER = 20
"""Fewest candidate requests a traffic verdict of failure rests on (min_requests if lower)."""
_LATENCY_FLOOR_MS = 1.0
"""A p95 no more than this above the baseline's is never a regression, whatever the ratio:
sub-millisecond differences are noise to a visitor."""
_WATCHED_GAP = 3.0
"""A look counts at most this many intervals of bake since the previous look."""


@dataclass(frozen=True, kw_only=True)
class BakeClock:
    """How long a stage has baked: the time a worker watched it while a gateway served it.

    Each look adds the time since the previous look (or since the stage began), but never
    more than ``_WATCHED_GAP`` intervals: a worker that was stopped, or a machine so busy
    that looks came late, adds what a few looks would have, so time nobody watched never
    makes a stage baked, nor overdue for traffic.
    """

    baked_s: float = 0.0
    """Seconds of watched bake so far."""
    looked_at: float
    """When the last look was (seconds since the epoch); the stage's start before any look."""

    def look(self, now: float, *, interval: float) -> BakeClock:
        """The clock after a look at ``now``, looks being ``interval`` seconds apart."""
        gap = min(max(now - self.looked_at, 0.0), _WATCHED_GAP * interval)
        return BakeClock(baked_s=self.baked_s + gap, looked_at=max(now, self.looked_at))


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One arm's traffic in the stage's window."""

    requests: int = 0
    errors: int = 0
    latencies: Sequence[float] = ()
    """Milliseconds; a sample of the requests."""
    buckets: Sequence[Bucket] = ()
    """The same traffic by time bucket; empty when unknown (the latencies then count as one
    bucket, which the other arm's latencies share)."""

    @classmethod
    def of(cls, buckets: Sequence[Bucket]) -> Arm:
        """The arm made of these buckets."""
        return cls(
            requests=sum(b.requests for b in buckets),
            errors=sum(b.errors for b in buckets),
            latencies=[ms for b in buckets for ms in b.latencies],
            buckets=tuple(buckets),
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        return float(np.quantile(self.latencies, q)) if len(self.latencies) else None

    def summary(self) -> dict[str, Any]:
        p50, p95 = self.quantile(0.5), self.quantile(0.95)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p50_ms": round(p50, 2) if p50 is not None else None,
            "p95_ms": round(p95, 2) if p95 is not None else None,
        }


@dataclass(frozen=True, kw_only=True)
class Rules:
    min_requests: int = 100
    max_error_rate_increase: float = 0.01
    max_p95_ratio: float = 1.5
    confidence: float = 0.95
    probe_failures: int = 2
    low_traffic: Literal["proceed", "rollback"] = "proceed"


@dataclass(kw_only=True)
class ProbeTally:
    """Probe results so far in this stage."""

    passed: int = 0
    failed: int = 0
    streak: dict[str, int] = field(default_factory=dict)
    """Consecutive failures per probe."""
    last_error: str = ""

    def record(self, probe: str, error: str | None) -> None:
        if error is None:
            self.passed += 1
            self.streak[probe] = 0
        else:
            self.failed += 1
            self.streak[probe] = self.streak.get(probe, 0) + 1
            self.last_error = f"{probe}: {error}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "streak": dict(self.streak),
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeTally:
        return cls(
            passed=int(data.get("passed", 0)),
            failed=int(data.get("failed", 0)),
            streak={str(k): int(v) for k, v in dict(data.get("streak", {})).items()},
            last_error=str(data.get("last_error", "")),
        )


@dataclass(frozen=True, kw_only=True)
class Verdict:
    outcome: Literal["pass", "fail", "wait"]
    reasons: tuple[str, ...]
    numbers: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reasons": list(self.reasons), **self.numbers}


def _error_bound(candidate: Arm, baseline: Arm, z: float, *, with_baseline: bool) -> float:
    """Lower confidence bound of the candidate's error rate minus the baseline's."""
    pc = (candidate.errors + 1) / (candidate.requests + 2)
    variance = pc * (1 - pc) / (candidate.requests + 2)
    pb = 0.0
    if with_baseline:
        pb = (baseline.errors + 1) / (baseline.requests + 2)
        variance += pb * (1 - pb) / (baseline.requests + 2)
    return (pc - pb) - z * math.sqrt(variance)


def analyse(
    candidate: Arm,
    baseline: Arm,
    rules: Rules,
    *,
    probes: ProbeTally | None = None,
    baked: bool,
    overdue: bool = False,
) -> Verdict:
    """The stage's verdict so far. ``baked``: the stage has been watched for its bake time
    (see ``BakeClock``); ``overdue``: also for the longest a stage may wait for traffic."""
    numbers: dict[str, Any] = {
        "candidate": candidate.summary(),
        "baseline": baseline.summary(),
        "thresholds": {
            "max_error_rate_increase": rules.max_error_rate_increase,
            "max_p95_ratio": rules.max_p95_ratio,
            "confidence": rules.confidence,
            "min_requests": rules.min_requests,
        },
    }
    failures = _traffic_failures(candidate, baseline, rules, numbers)
    if probes is not None:
        numbers["probes"] = probes.to_dict()
        failures += _probe_failures(probes, rules)
    if failures:
        return Verdict(outcome="fail", reasons=tuple(failures), numbers=numbers)
    if not baked:
        return Verdict(outcome="wait", reasons=("baking",), numbers=numbers)
    if candidate.requests >= rules.min_requests:
        return Verdict(
            outcome="pass", reasons=(_enough_traffic(candidate, baseline, rules),), numbers=numbers
        )
    return _thin_traffic(candidate, rules, probes, overdue=overdue, numbers=numbers)


def _enough_to_judge(arm: Arm, rules: Rules) -> bool:
    """Whether an arm has seen enough requests for its traffic to be judged (a failure may
    rest on fewer than ``min_requests``: ``_FAIL_AFTER``)."""
    return arm.requests >= min(rules.min_requests, _FAIL_AFTER)


def _traffic_failures(
    candidate: Arm, baseline: Arm, rules: Rules, numbers: dict[str, Any]
) -> list[str]:
    """Why the candidate's errors or latency fail the stage (empty: they do not, or not yet);
    the bounds computed go into ``numbers``."""
    z = NormalDist().inv_cdf(rules.confidence)
    if not _enough_to_judge(candidate, rules):
        return []
    enough_baseline = _enough_to_judge(baseline, rules)
    failures: list[str] = []
    bound = _error_bound(candidate, baseline, z, with_baseline=enough_baseline)
    numbers["error_increase_low"] = round(bound, 4)
    if bound > rules.max_error_rate_increase:
        failures.append(
            f"error rate {candidate.error_rate:.1%} vs baseline {baseline.error_rate:.1%}: "
            f"the increase is at least {bound:.1%} at {rules.confidence:.0%} confidence "
            f"(limit {rules.max_error_rate_increase:.1%})"
        )
    if not enough_baseline:
        return failures
    # Arms given without buckets (made-up numbers) share one bucket: compared as wholes.
    bucketed = bool(candidate.buckets and baseline.buckets)
    p95 = compare_p95(
        candidate.buckets if bucketed else [Bucket(at=0, latencies=candidate.latencies)],
        baseline.buckets if bucketed else [Bucket(at=0, latencies=baseline.latencies)],
        confidence=rules.confidence,
        fewest=min(rules.min_requests, _FAIL_AFTER),
    )
    if p95 is None:
        return failures
    numbers["p95_ratio"], numbers["p95_ratio_low"] = round(p95.ratio, 3), round(p95.low, 3)
    if bucketed:
        numbers["p95_windows"] = p95.windows
    if p95.low > rules.max_p95_ratio and p95.candidate_ms - p95.baseline_ms > _LATENCY_FLOOR_MS:
        where = ""
        if bucketed:
            where = (
                f" in the same {p95.windows} windows" if p95.windows > 1 else " in the same window"
            )
        failures.append(
            f"p95 latency {p95.candidate_ms:.1f} ms vs baseline {p95.baseline_ms:.1f} ms{where}: "
            f"at least {p95.low:.2f}× at {rules.confidence:.0%} confidence "
            f"(limit {rules.max_p95_ratio:g}×)"
        )
    return failures


def _probe_failures(probes: ProbeTally, rules: Rules) -> list[str]:
    broken = [p for p, n in probes.streak.items() if n >= rules.probe_failures]
    if not broken:
        return []
    return [
        f"probe {', '.join(broken)} failed {rules.probe_failures}× in a row "
        f"(last: {probes.last_error})"
    ]


def _enough_traffic(candidate: Arm, baseline: Arm, rules: Rules) -> str:
    """Why a baked stage with ``min_requests`` candidate requests and no failure passes."""
    compared = (
        f"no worse than {baseline.requests} baseline requests"
        if _enough_to_judge(baseline, rules)
        else f"within {rules.max_error_rate_increase:.1%} 5xx (no baseline to compare with: "
        f"{baseline.requests} baseline requests)"
    )
    return (
        f"{candidate.requests} candidate requests {compared} at {rules.confidence:.0%} confidence"
    )


def _thin_traffic(
    candidate: Arm,
    rules: Rules,
    probes: ProbeTally | None,
    *,
    overdue: bool,
    numbers: dict[str, Any],
) -> Verdict:
    """The verdict on a baked stage short of ``min_requests``: wait for traffic until the
    longest bake; then roll back, or (``proceed``) go on once every probe's latest result
    passed. A probe failing fewer than ``probe_failures`` times in a row is not evidence
    either way (one slow reply on a busy machine): the stage waits for its next result."""
    thin = f"only {candidate.requests} of {rules.min_requests} candidate requests"
    if not overdue:
        return Verdict(outcome="wait", reasons=(f"{thin}: waiting for traffic",), numbers=numbers)
    if rules.low_traffic == "rollback":
        return Verdict(outcome="fail", reasons=(f"{thin} by the longest bake",), numbers=numbers)
    if probes is None:
        return Verdict(outcome="fail", reasons=(f"{thin} and no probes to go on",), numbers=numbers)
    failing = {p: n for p, n in probes.streak.items() if n}
    if probes.passed and not failing:
        return Verdict(
            outcome="pass",
            reasons=(f"{thin}: decided on {probes.passed} passing probes",),
            numbers=numbers,
        )
    waiting = "waiting for a probe to pass"
    if failing:
        listed = ", ".join(f"{p} ({n} of {rules.probe_failures})" for p, n in failing.items())
        waiting = (
            f"probe {listed} failing in a row (last: {probes.last_error}): waiting for its "
            "next result"
        )
    return Verdict(outcome="wait", reasons=(f"{thin}; {waiting}",), numbers=numbers)
