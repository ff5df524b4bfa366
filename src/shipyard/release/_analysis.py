"""Canary analysis: is the candidate worse than the baseline, and how sure are we?

Each stage compares what the gateway measured on the two arms over the same window:

- **Errors.** The candidate fails when the lower confidence bound of (candidate 5xx rate
  minus baseline 5xx rate) is above ``max_error_rate_increase``. The bound is the
  Agresti–Caffo interval (add one error and one success to each arm), which stays honest on
  small samples and when an arm has no errors at all.
- **Latency.** The candidate fails when the lower confidence bound of (candidate p95 over
  baseline p95) is above ``max_p95_ratio``. Both p95s are taken over the same time buckets
  (the gateway's flushes in which both arms have samples), each bucket weighing the same in
  both arms, so a slowdown of the whole machine lands on both sides of the ratio. The bound
  comes from a bootstrap that resamples within each bucket (seeded from the data, so the same
  numbers give the same verdict). A p95 less than a millisecond above the baseline's never
  fails.
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

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

__all__ = ["Arm", "BakeClock", "Bucket", "ProbeTally", "Rules", "Verdict", "analyse"]

_FAIL_AFTER = 20
"""Fewest candidate requests a traffic verdict of failure rests on (min_requests if lower)."""
_LATENCY_FLOOR_MS = 1.0
"""A p95 no more than this above the baseline's is never a regression, whatever the ratio:
sub-millisecond differences are noise to a visitor."""
_BOOTSTRAP = 400
_MAX_LATENCIES = 5000
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
class Bucket:
    """One arm's traffic in one time bucket: what the gateway recorded in one flush."""

    at: float
    """When the gateway wrote it (seconds since the epoch); a flush writes both arms at once."""
    requests: int = 0
    errors: int = 0
    latencies: Sequence[float] = ()
    """Milliseconds; a sample of the bucket's requests."""


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


@dataclass(frozen=True, kw_only=True)
class _SameWindows:
    """Both arms' latencies over the time buckets where both have some."""

    weights: list[float]
    """Each bucket's share of the traffic (both arms' requests), the same in both arms."""
    candidate: list[np.ndarray]
    """The candidate's latencies, one array per bucket."""
    baseline: list[np.ndarray]
    """The baseline's, likewise."""
    bucketed: bool = True
    """False: the arms came without buckets and were compared as wholes."""

    def where(self) -> str:
        n = len(self.weights)
        return f" in the same {n} window{'s' if n > 1 else ''}" if self.bucketed else ""

    def sizes(self) -> tuple[int, int]:
        return sum(c.size for c in self.candidate), sum(b.size for b in self.baseline)


def _by_time(buckets: Sequence[Bucket]) -> dict[float, tuple[int, list[float]]]:
    merged: dict[float, tuple[int, list[float]]] = {}
    for bucket in buckets:
        n, latencies = merged.get(round(bucket.at, 3), (0, []))
        merged[round(bucket.at, 3)] = (n + bucket.requests, latencies + list(bucket.latencies))
    return merged


def _thinned(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """At most ``_MAX_LATENCIES`` in all, each bucket keeping its share as evenly spaced
    quantiles of itself (deterministic, so the verdict stays a function of the data)."""
    total = sum(a.size for a in arrays)
    if total <= _MAX_LATENCIES:
        return arrays
    kept = []
    for a in arrays:
        keep = max(1, a.size * _MAX_LATENCIES // total)
        kept.append(np.sort(a)[np.linspace(0, a.size - 1, keep).round().astype(int)])
    return kept


def _same_windows(candidate: Arm, baseline: Arm) -> _SameWindows | None:
    """The arms' latencies bucket by bucket; None when they share no bucket with latencies.
    Arms without buckets count as one shared bucket (made-up numbers in tests and docs)."""
    if not candidate.buckets or not baseline.buckets:
        c = np.asarray(candidate.latencies, dtype=float)
        b = np.asarray(baseline.latencies, dtype=float)
        if not c.size or not b.size:
            return None
        return _SameWindows(weights=[1.0], candidate=[c], baseline=[b], bucketed=False)
    ours, theirs = _by_time(candidate.buckets), _by_time(baseline.buckets)
    shared = sorted(t for t in ours if ours[t][1] and t in theirs and theirs[t][1])
    if not shared:
        return None
    weights = [
        float(ours[t][0] + theirs[t][0] or len(ours[t][1]) + len(theirs[t][1])) for t in shared
    ]
    return _SameWindows(
        weights=weights,
        candidate=_thinned([np.asarray(ours[t][1], dtype=float) for t in shared]),
        baseline=_thinned([np.asarray(theirs[t][1], dtype=float) for t in shared]),
    )


def _weighted_p95(arrays: list[np.ndarray], weights: list[float]) -> float:
    """The p95 of the mixture in which bucket ``i`` weighs ``weights[i]``, interpolated as
    ``numpy.quantile`` does (and equal to it when there is one bucket)."""
    values = np.concatenate(arrays)
    each = np.concatenate(
        [np.full(a.size, w / a.size) for a, w in zip(arrays, weights, strict=True)]
    )
    order = np.argsort(values, kind="stable")
    values, each = values[order], each[order]
    cumulative = np.cumsum(each)
    span = cumulative[-1] - each[-1]
    if values.size == 1 or span <= 0:
        return float(values[-1])
    return float(np.interp(0.95, (cumulative - each) / span, values))


def _resampled_p95s(
    arrays: list[np.ndarray], weights: list[float], rng: np.random.Generator
) -> np.ndarray:
    """``_BOOTSTRAP`` p95s of the mixture, each from a resample drawn bucket by bucket in
    proportion to the buckets' weights (as many draws in all as the arm has latencies)."""
    total, weight = sum(a.size for a in arrays), sum(weights)
    draws = [
        rng.choice(a, size=(_BOOTSTRAP, max(1, round(total * w / weight))))
        for a, w in zip(arrays, weights, strict=True)
    ]
    p95s: np.ndarray = np.quantile(np.concatenate(draws, axis=1), 0.95, axis=1)
    return p95s


def _p95_ratio_bound(same: _SameWindows, confidence: float) -> tuple[float, float, float, float]:
    """(candidate p95, baseline p95, their ratio, its lower confidence bound by a bootstrap
    within the buckets), both p95s over the same buckets."""
    floor = 0.01  # ms: a ratio against a zero latency means nothing
    c95 = _weighted_p95(same.candidate, same.weights)
    b95 = _weighted_p95(same.baseline, same.weights)
    data = np.concatenate([*same.candidate, *same.baseline, np.asarray(same.weights)])
    if len(same.weights) == 1:  # the seed of the one-bucket comparison stays what it was
        data = np.concatenate([*same.candidate, *same.baseline])
    seed = hashlib.sha256(data.tobytes()).digest()
    rng = np.random.default_rng(int.from_bytes(seed[:8], "big"))
    rc = _resampled_p95s(same.candidate, same.weights, rng)
    rb = _resampled_p95s(same.baseline, same.weights, rng)
    ratios = np.maximum(rc, floor) / np.maximum(rb, floor)
    observed = max(c95, floor) / max(b95, floor)
    return c95, b95, observed, float(np.quantile(ratios, 1 - confidence))


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
    same = _same_windows(candidate, baseline) if enough_baseline else None
    fewest = min(rules.min_requests, _FAIL_AFTER)
    if same is not None and min(same.sizes()) >= fewest:
        c95, b95, ratio, low = _p95_ratio_bound(same, rules.confidence)
        numbers["p95_ratio"], numbers["p95_ratio_low"] = round(ratio, 3), round(low, 3)
        if same.bucketed:
            numbers["p95_windows"] = len(same.weights)
        if low > rules.max_p95_ratio and c95 - b95 > _LATENCY_FLOOR_MS:
            failures.append(
                f"p95 latency {c95:.1f} ms vs baseline {b95:.1f} ms{same.where()}: at least "
                f"{low:.2f}× at {rules.confidence:.0%} confidence "
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
