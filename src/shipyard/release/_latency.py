"""The canary's latency rule: the candidate's p95 against the baseline's, at the same moments.

The gateway writes both arms' tallies for a second in one go, so the samples come in
one-second buckets that the two arms share. A slowdown of the whole machine (another job, a
CPU hog, a garbage collection in the gateway) lands on both arms in the same buckets. Pooling
a stage's latencies would let those seconds decide both p95s and squeeze any real difference
towards 1×; so the comparison is made window by window instead:

1. keep the buckets in which both arms have latencies;
2. join consecutive ones into *windows* until each arm has ``WINDOW_SAMPLES`` latencies in
   the window (a p95 of fewer is mostly noise), the remainder going to the last window;
3. in each window, the ratio of the candidate's p95 to the baseline's;
4. the stage's ratio is the geometric mean of the windows' ratios, each window weighing the
   traffic it carried (both arms' requests);
5. its lower confidence bound is a bootstrap: each arm resampled within each window, 400
   times, seeded from the data (the same numbers always give the same bound).

With one window (little traffic, or arms given without buckets) this is the plain ratio of
the two p95s with a bootstrap bound.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["WINDOW_SAMPLES", "Bucket", "P95Comparison", "compare_p95"]

WINDOW_SAMPLES = 20
"""Latencies of each arm a window gathers before it is compared on its own."""
_BOOTSTRAP = 400
_MAX_LATENCIES = 5000
_FLOOR_MS = 0.01
"""A ratio against a zero latency means nothing."""


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
class P95Comparison:
    """The candidate's p95 against the baseline's over the windows they share."""

    candidate_ms: float
    """The candidate's p95, averaged over the windows (weighted by their traffic)."""
    baseline_ms: float
    """The baseline's, likewise."""
    ratio: float
    """The geometric mean of the windows' p95 ratios."""
    low: float
    """Its lower confidence bound."""
    windows: int
    """How many windows it rests on."""


@dataclass(frozen=True, kw_only=True)
class _Window:
    weight: float
    """Both arms' requests in the window."""
    candidate: np.ndarray
    baseline: np.ndarray


def compare_p95(
    candidate: Sequence[Bucket], baseline: Sequence[Bucket], *, confidence: float, fewest: int
) -> P95Comparison | None:
    """The comparison, or None when the shared buckets hold fewer than ``fewest`` latencies
    of either arm."""
    windows = _windows(_shared(candidate, baseline))
    if not windows or min(_sizes(windows)) < fewest:
        return None
    weights = np.array([w.weight for w in windows]) / sum(w.weight for w in windows)
    c95 = np.array([np.quantile(w.candidate, 0.95) for w in windows])
    b95 = np.array([np.quantile(w.baseline, 0.95) for w in windows])
    rng = _seeded(windows)
    draws_c, draws_b = [], []
    for w in windows:  # candidate then baseline, window by window
        draws_c.append(
            np.quantile(rng.choice(w.candidate, (_BOOTSTRAP, w.candidate.size)), 0.95, axis=1)
        )
        draws_b.append(
            np.quantile(rng.choice(w.baseline, (_BOOTSTRAP, w.baseline.size)), 0.95, axis=1)
        )
    resampled = _mean_ratio(np.array(draws_c), np.array(draws_b), weights)
    return P95Comparison(
        candidate_ms=float(weights @ c95),
        baseline_ms=float(weights @ b95),
        ratio=float(_mean_ratio(c95[:, None], b95[:, None], weights)[0]),
        low=float(np.quantile(resampled, 1 - confidence)),
        windows=len(windows),
    )


def _mean_ratio(c95: np.ndarray, b95: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per column: the weighted geometric mean over the rows (windows) of c95 / b95."""
    logs = np.log(np.maximum(c95, _FLOOR_MS) / np.maximum(b95, _FLOOR_MS))
    means: np.ndarray = np.exp(weights @ logs)
    return means


def _shared(
    candidate: Sequence[Bucket], baseline: Sequence[Bucket]
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(traffic, candidate latencies, baseline latencies) of each bucket both arms have
    latencies in, oldest first; each arm thinned to ``_MAX_LATENCIES`` in all."""
    ours, theirs = _by_time(candidate), _by_time(baseline)
    times = sorted(t for t in ours if ours[t][1] and t in theirs and theirs[t][1])
    traffic = [
        float(ours[t][0] + theirs[t][0] or len(ours[t][1]) + len(theirs[t][1])) for t in times
    ]
    c = _thinned([np.asarray(ours[t][1], dtype=float) for t in times])
    b = _thinned([np.asarray(theirs[t][1], dtype=float) for t in times])
    return list(zip(traffic, c, b, strict=True))


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


def _windows(shared: list[tuple[float, np.ndarray, np.ndarray]]) -> list[_Window]:
    """Consecutive buckets joined until each arm has ``WINDOW_SAMPLES`` latencies; a
    remainder short of that joins the last window."""
    windows: list[_Window] = []
    weight, cs, bs = 0.0, list[np.ndarray](), list[np.ndarray]()
    for traffic, c, b in shared:
        weight, cs, bs = weight + traffic, [*cs, c], [*bs, b]
        if min(sum(x.size for x in cs), sum(x.size for x in bs)) >= WINDOW_SAMPLES:
            windows.append(_window(weight, cs, bs))
            weight, cs, bs = 0.0, [], []
    if cs and windows:  # a short remainder joins the last window
        last = windows.pop()
        weight, cs, bs = last.weight + weight, [last.candidate, *cs], [last.baseline, *bs]
    if cs:
        windows.append(_window(weight, cs, bs))
    return windows


def _window(weight: float, cs: list[np.ndarray], bs: list[np.ndarray]) -> _Window:
    return _Window(weight=weight, candidate=np.concatenate(cs), baseline=np.concatenate(bs))


def _sizes(windows: list[_Window]) -> tuple[int, int]:
    return sum(w.candidate.size for w in windows), sum(w.baseline.size for w in windows)


def _seeded(windows: list[_Window]) -> np.random.Generator:
    """A generator seeded from the data. One window is seeded from its latencies alone."""
    parts = [a for w in windows for a in (w.candidate, w.baseline)]
    if len(windows) == 1:
        parts = [windows[0].candidate, windows[0].baseline]
    else:
        parts.append(np.array([w.weight for w in windows]))
    seed = hashlib.sha256(np.concatenate(parts).tobytes()).digest()
    return np.random.default_rng(int.from_bytes(seed[:8], "big"))
