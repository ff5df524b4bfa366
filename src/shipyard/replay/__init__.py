"""Replay: try a new policy, prompt, model or check set on recorded tasks before it goes live,
and see every regression (simulation only: nothing leaves Shipyard, no live record changes)."""

from __future__ import annotations

from shipyard.replay._activate import Activated, activate_policy
from shipyard.replay._replay import Candidate, candidate_runtime, run_replay
from shipyard.replay._report import Thresholds, regressions, render_html, totals
from shipyard.replay._run import STEPS, Selection, content_hash, policy_hash, select_tasks

__all__ = [
    "STEPS",
    "Activated",
    "Candidate",
    "Selection",
    "Thresholds",
    "activate_policy",
    "candidate_runtime",
    "content_hash",
    "policy_hash",
    "regressions",
    "render_html",
    "run_replay",
    "select_tasks",
    "totals",
]
