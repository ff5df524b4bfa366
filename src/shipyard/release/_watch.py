"""Watching what is live: is a live path worse now than it has been since its promotion?

A monitor looks at each live path every round. It compares the *window* (the path's
traffic over the last ``window_seconds``) with the path's *baseline* (its own traffic since
the promotion, up to ``baseline_minutes`` before the window, never the window itself):

- **Errors.** The lower confidence bound of (window 5xx rate minus baseline 5xx rate), by
  the canary's Agresti–Caffo interval, above ``max_error_rate_increase`` is an anomaly. A
  path with too little history to be a baseline (a version just promoted) is judged on its
  own 5xx rate against 0, as a canary without a baseline is.
- **Latency.** The window's p95 over the baseline's. Time is what separates the two, so a
  slowdown of the whole machine (another job, a CPU hog) would look like a regression of the
  path. Where other live paths had traffic at the same moments, each side is first measured
  against them, window by window over the gateway's shared time buckets
  (``_latency.compare_p95``, as the canary compares its arms): the anomaly is the path
  becoming slower *relative to the others*, which a machine-wide slowdown does not change.
  With no other live path, the window's p95 is compared with the baseline's directly, and
  the window must be slower in each of its parts, so a stall of a few seconds is not enough;
  the verdict then says that a slowdown of the whole machine could not be told apart. A p95
  less than a millisecond above the baseline's is never an anomaly.
- **Probes.** A probe failing ``probe_failures`` times in a row is an anomaly.

Nothing is concluded from an absence of evidence: a window with fewer than
min(``min_requests``, 20) requests says nothing about traffic (the verdict is ``thin`` and
rests on the probes alone), and a health verdict needs ``min_requests``. Each verdict
names what it rested on. A cause is *recovered* (its incident can be resolved) only on
positive evidence: enough requests whose 5xx rate or p95 is within the limit, or every
probe's latest result passing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from shipyard.release._analysis import Arm, ProbeTally, _error_bound
from shipyard.release._latency import WINDOW_SAMPLES, Bucket, compare_p95

__all__ = ["CAUSES", "LIVE_ARM", "Finding", "Health", "WatchRules", "watch"]

LIVE_ARM = "live"
"""The gateway's tallies of a live version on a path with no candidate (``release_samples``
rows of this arm, under the live release's key), which a monitor reads."""

Cause = Literal["errors", "latency", "probe"]
CAUSES: tuple[Cause, ...] = ("errors", "latency", "probe")

_Judged = tuple[str | None, bool, str]
"""A rule's result: the anomaly in words (None: none), whether the path is within the
limit on positive evidence, and what the rule rested on."""

_FEWEST = 20
"""Fewest window requests (min_requests if lower) a verdict on traffic rests on."""
_PARTS = 4
"""Without other live paths to compare with, the window must be slower in each of this many
parts of it: a stall of a few seconds slows one."""
_LATENCY_FLOOR_MS = 1.0
"""A p95 no more than this above the baseline's is never an anomaly."""


@dataclass(frozen=True, kw_only=True)
class WatchRules:
    """What makes a live path anomalous (``[targets.NAME.monitor]``)."""

    min_requests: int = 50
    """Window requests a verdict of health needs (an anomaly needs min(this, 20))."""
    max_error_rate_increase: float = 0.01
    """The window's 5xx rate above the baseline's that is an anomaly."""
    max_p95_ratio: float = 1.5
    """The window's p95 over the baseline's that is an anomaly (at least 1)."""
    confidence: float = 0.99
    """How sure each rule must be; a monitor tests every round, so higher than a canary's."""
    probe_failures: int = 3
    """Consecutive failures of one probe that are an anomaly."""


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One anomaly: its cause and the numbers in words."""

    cause: Cause
    reason: str


@dataclass(frozen=True, kw_only=True)
class Health:
    """A path's verdict for one round."""

    anomalies: tuple[Finding, ...]
    """What is wrong now (empty: nothing is, or there is too little to tell)."""
    recovered: frozenset[str]
    """Causes with positive evidence of health now (an open incident of one may close)."""
    reasons: tuple[str, ...]
    """What the verdict rested on, in words."""
    numbers: dict[str, Any]

    @property
    def outcome(self) -> Literal["anomaly", "ok", "thin"]:
        if self.anomalies:
            return "anomaly"
        window = self.numbers["window"]["requests"]
        return "ok" if window >= self.numbers["thresholds"]["min_requests"] else "thin"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "anomalies": [{"cause": f.cause, "reason": f.reason} for f in self.anomalies],
            "recovered": sorted(self.recovered),
            "reasons": list(self.reasons),
            **self.numbers,
        }


def watch(
    window: Arm,
    baseline: Arm,
    rules: WatchRules,
    *,
    control: tuple[Arm, Arm] | None = None,
    probes: ProbeTally | None = None,
) -> Health:
    """The verdict on a live path's ``window`` against its ``baseline``.

    ``control``: the other live paths' traffic (window, baseline), by the same time buckets,
    to tell a slowdown of the path from one of the whole machine. ``probes``: the path's
    probe results so far (consecutive failures per probe).
    """
    numbers: dict[str, Any] = {
        "window": window.summary(),
        "baseline": baseline.summary(),
        "thresholds": {
            "max_error_rate_increase": rules.max_error_rate_increase,
            "max_p95_ratio": rules.max_p95_ratio,
            "confidence": rules.confidence,
            "min_requests": rules.min_requests,
            "probe_failures": rules.probe_failures,
        },
    }
    findings: list[Finding] = []
    recovered: set[str] = set()
    reasons: list[str] = []
    fewest = min(rules.min_requests, _FEWEST)
    if window.requests < fewest:
        reasons.append(
            f"only {window.requests} requests in the window (fewer than {fewest}): "
            "nothing to judge on traffic"
        )
    else:
        errors = _errors(window, baseline, rules, numbers)
        latency = _latency(window, baseline, rules, control, numbers)
        checked: tuple[tuple[Cause, _Judged], ...] = (("errors", errors), ("latency", latency))
        for cause, (finding, healthy, said) in checked:
            reasons.append(said)
            if finding is not None:
                findings.append(Finding(cause=cause, reason=finding))
            elif healthy and window.requests >= rules.min_requests:
                recovered.add(cause)
    if probes is not None and probes.streak:
        numbers["probes"] = probes.to_dict()
        broken = [p for p, n in probes.streak.items() if n >= rules.probe_failures]
        if broken:
            findings.append(
                Finding(
                    cause="probe",
                    reason=f"probe {', '.join(broken)} failed {rules.probe_failures}× in a row "
                    f"(last: {probes.last_error})",
                )
            )
        elif not any(probes.streak.values()):
            recovered.add("probe")
            reasons.append(f"{len(probes.streak)} probe(s) passing")
        else:
            failing = ", ".join(
                f"{p} ({n} of {rules.probe_failures})" for p, n in probes.streak.items() if n
            )
            reasons.append(f"probe {failing} failing in a row: waiting for its next result")
    return Health(
        anomalies=tuple(findings),
        recovered=frozenset(recovered),
        reasons=tuple(reasons),
        numbers=numbers,
    )


def _errors(window: Arm, baseline: Arm, rules: WatchRules, numbers: dict[str, Any]) -> _Judged:
    """The errors rule (see the module's docstring)."""
    z = NormalDist().inv_cdf(rules.confidence)
    fewest = min(rules.min_requests, _FEWEST)
    with_baseline = baseline.requests >= fewest
    bound = _error_bound(window, baseline, z, with_baseline=with_baseline)
    numbers["error_increase_low"] = round(bound, 4)
    before = baseline.error_rate if with_baseline else 0.0
    compared = (
        f"vs {baseline.error_rate:.1%} since promotion ({baseline.requests} requests)"
        if with_baseline
        else f"with no baseline yet ({baseline.requests} requests since promotion), against 0"
    )
    said = f"5xx {window.error_rate:.1%} over {window.requests} requests {compared}"
    if bound > rules.max_error_rate_increase:
        return (
            f"error rate {window.error_rate:.1%} {compared}: the increase is at least "
            f"{bound:.1%} at {rules.confidence:.0%} confidence "
            f"(limit {rules.max_error_rate_increase:.1%})",
            False,
            said,
        )
    return None, window.error_rate - before <= rules.max_error_rate_increase, said


def _latency(
    window: Arm,
    baseline: Arm,
    rules: WatchRules,
    control: tuple[Arm, Arm] | None,
    numbers: dict[str, Any],
) -> _Judged:
    """Like ``_errors``, for the p95: against the other live paths when they had traffic at
    the same moments, else directly and only when the whole window is slower."""
    fewest = min(rules.min_requests, _FEWEST)
    now_ms, before_ms = window.quantile(0.95), baseline.quantile(0.95)
    if now_ms is None or before_ms is None or len(baseline.latencies) < fewest:
        return None, False, "latency not judged: no baseline yet"
    gap = now_ms - before_ms
    numbers["p95_ms"] = {"window": round(now_ms, 2), "baseline": round(before_ms, 2)}
    relative = _relative(window, baseline, control, rules, fewest) if control else None
    if relative is not None:
        ratio, low, windows = relative
        numbers["p95_against"] = "other live paths"
        where = (
            f"against the other live paths at the same moments ({windows[0]} window(s) now, "
            f"{windows[1]} before)"
        )
        steady = True
    else:
        direct = compare_p95(
            [Bucket(at=0, latencies=window.latencies)],
            [Bucket(at=0, latencies=baseline.latencies)],
            confidence=rules.confidence,
            fewest=fewest,
        )
        if direct is None:
            return None, False, "latency not judged: too few latencies"
        ratio, low = direct.ratio, direct.low
        parts = _part_ratios(window, before_ms)
        numbers["p95_against"] = "baseline only"
        numbers["p95_parts"] = [round(r, 3) for r in parts]
        steady = bool(parts) and min(parts) > rules.max_p95_ratio
        where = (
            f"directly, the slowest of its {len(parts)} part(s) {max(parts):.2f}× and the "
            f"fastest {min(parts):.2f}× (no other live path had traffic at the same moments, "
            "so a slowdown of the whole machine cannot be told apart)"
        )
    numbers["p95_ratio"], numbers["p95_ratio_low"] = round(ratio, 3), round(low, 3)
    said = f"p95 {now_ms:.1f} ms vs {before_ms:.1f} ms since promotion: {ratio:.2f}× {where}"
    if low > rules.max_p95_ratio and steady and gap > _LATENCY_FLOOR_MS:
        return (
            f"p95 latency {now_ms:.1f} ms vs {before_ms:.1f} ms since promotion, {where}: at "
            f"least {low:.2f}× at {rules.confidence:.0%} confidence "
            f"(limit {rules.max_p95_ratio:g}×)",
            False,
            said,
        )
    return None, ratio <= rules.max_p95_ratio or gap <= _LATENCY_FLOOR_MS, said


def _relative(
    window: Arm,
    baseline: Arm,
    control: tuple[Arm, Arm],
    rules: WatchRules,
    fewest: int,
) -> tuple[float, float, tuple[int, int]] | None:
    """(ratio, its lower bound, windows now and before) of the path's p95 relative to the
    other paths' now, over the same relative p95 before; None when either side lacks shared
    buckets. The two bounds are multiplied, which is conservative (each holds at the
    confidence on its own)."""
    others_now, others_before = control
    now = compare_p95(
        window.buckets, others_now.buckets, confidence=rules.confidence, fewest=fewest
    )
    # The baseline the other way round: its lower bound is the upper bound of path/others.
    before = compare_p95(
        others_before.buckets, baseline.buckets, confidence=rules.confidence, fewest=fewest
    )
    if now is None or before is None:
        return None
    return now.ratio * before.ratio, now.low * before.low, (now.windows, before.windows)


def _part_ratios(window: Arm, before_ms: float) -> list[float]:
    """The window cut by time into up to ``_PARTS`` consecutive parts of at least
    ``WINDOW_SAMPLES`` latencies each (a remainder joins the last part); each part's p95
    over the baseline's."""
    buckets: Sequence[Bucket] = sorted(window.buckets, key=lambda b: b.at) or [
        Bucket(at=0, latencies=window.latencies)
    ]
    size = max(WINDOW_SAMPLES, -(-len(window.latencies) // _PARTS))
    parts: list[list[float]] = []
    current: list[float] = []
    for bucket in buckets:
        current.extend(bucket.latencies)
        if len(current) >= size:
            parts.append(current)
            current = []
    if current and parts:
        parts[-1].extend(current)
    elif current:
        parts.append(current)
    floor = max(before_ms, 0.01)
    return [float(np.quantile(part, 0.95)) / floor for part in parts]
