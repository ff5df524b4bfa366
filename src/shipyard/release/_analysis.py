"""Canary analysis: is the candidate worse than the baseline, and how sure are we?

Each stage compares what the gateway measured on the two arms over the same window:

- **Errors.** The candidate fails when the lower confidence bound of (candidate 5xx rate
  minus baseline 5xx rate) is above ``max_error_rate_increase``. The bound is the
  Agresti–Caffo interval (add one error and one success to each arm), which stays honest on
  small samples and when an arm has no errors at all.
- **Latency.** The candidate fails when the lower confidence bound of (candidate p95 over
  baseline p95) is above ``max_p95_ratio``. The bound comes from a bootstrap of both arms'
  latency samples (seeded from the data, so the same numbers give the same verdict). A p95
  less than a millisecond above the baseline's never fails.
- **Probes.** A probe that fails ``probe_failures`` times in a row fails the stage.

A stage fails as soon as the evidence is significant (no need to wait out the bake); it
passes only at the end of its bake with at least ``min_requests`` candidate requests, or
with fewer when the traffic stayed thin past the longest bake and the rollout is told to
proceed on its probes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

__all__ = ["Arm", "ProbeTally", "Rules", "Verdict", "analyse"]

_FAIL_AFTER = 20
"""Fewest candidate requests a traffic verdict of failure rests on (min_requests if lower)."""
_LATENCY_FLOOR_MS = 1.0
"""A p95 no more than this above the baseline's is never a regression, whatever the ratio:
sub-millisecond differences are noise to a visitor."""
_BOOTSTRAP = 400
_MAX_LATENCIES = 5000


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One arm's traffic in the stage's window."""

    requests: int = 0
    errors: int = 0
    latencies: Sequence[float] = ()
    """Milliseconds; a sample of the requests."""

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


def _p95_ratio_bound(candidate: Arm, baseline: Arm, confidence: float) -> tuple[float, float]:
    """(observed p95 ratio, its lower confidence bound by bootstrap)."""
    c = np.asarray(candidate.latencies[-_MAX_LATENCIES:], dtype=float)
    b = np.asarray(baseline.latencies[-_MAX_LATENCIES:], dtype=float)
    floor = 0.01  # ms: a ratio against a zero latency means nothing
    observed = max(float(np.quantile(c, 0.95)), floor) / max(float(np.quantile(b, 0.95)), floor)
    seed = hashlib.sha256(c.tobytes() + b.tobytes()).digest()
    rng = np.random.default_rng(int.from_bytes(seed[:8], "big"))
    rc = np.quantile(rng.choice(c, size=(_BOOTSTRAP, c.size)), 0.95, axis=1)
    rb = np.quantile(rng.choice(b, size=(_BOOTSTRAP, b.size)), 0.95, axis=1)
    ratios = np.maximum(rc, floor) / np.maximum(rb, floor)
    return observed, float(np.quantile(ratios, 1 - confidence))


def analyse(
    candidate: Arm,
    baseline: Arm,
    rules: Rules,
    *,
    probes: ProbeTally | None = None,
    baked: bool,
    overdue: bool = False,
) -> Verdict:
    """The stage's verdict so far. ``baked``: the bake time is over; ``overdue``: so is the
    longest a stage may wait for traffic."""
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
    if enough_baseline and len(candidate.latencies) and len(baseline.latencies):
        ratio, low = _p95_ratio_bound(candidate, baseline, rules.confidence)
        numbers["p95_ratio"], numbers["p95_ratio_low"] = round(ratio, 3), round(low, 3)
        gap = (candidate.quantile(0.95) or 0.0) - (baseline.quantile(0.95) or 0.0)
        if low > rules.max_p95_ratio and gap > _LATENCY_FLOOR_MS:
            failures.append(
                f"p95 latency {candidate.quantile(0.95):.1f} ms vs baseline "
                f"{baseline.quantile(0.95):.1f} ms: at least {low:.2f}× at "
                f"{rules.confidence:.0%} confidence (limit {rules.max_p95_ratio:g}×)"
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
    longest bake, then roll back or decide on the probes, as ``low_traffic`` says."""
    thin = f"only {candidate.requests} of {rules.min_requests} candidate requests"
    if not overdue:
        return Verdict(outcome="wait", reasons=(f"{thin}: waiting for traffic",), numbers=numbers)
    if rules.low_traffic == "rollback":
        return Verdict(outcome="fail", reasons=(f"{thin} by the longest bake",), numbers=numbers)
    if probes is not None and probes.passed:
        return Verdict(
            outcome="pass",
            reasons=(f"{thin}: decided on {probes.passed} passing probes",),
            numbers=numbers,
        )
    return Verdict(
        outcome="fail", reasons=(f"{thin} and no passing probe to go on",), numbers=numbers
    )
