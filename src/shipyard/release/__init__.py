"""Releases: targets that put artifacts live, canary analysis, the watch over what is live,
and undoable switches."""

from __future__ import annotations

from shipyard.release._analysis import (
    Arm,
    BakeClock,
    Bucket,
    ProbeTally,
    Rules,
    Verdict,
    analyse,
)
from shipyard.release._routes import RouteTable, bucket
from shipyard.release._target import Deployed, Promoted, Target
from shipyard.release._watch import CAUSES, LIVE_ARM, Finding, Health, WatchRules, watch
from shipyard.release.targets.git import GitTarget
from shipyard.release.targets.http_handler import HttpHandler
from shipyard.release.targets.repo import RepoChangeTarget
from shipyard.release.targets.static_site import PublishResult, RollbackResult, StaticSite

__all__ = [
    "CAUSES",
    "LIVE_ARM",
    "Arm",
    "BakeClock",
    "Bucket",
    "Deployed",
    "Finding",
    "GitTarget",
    "Health",
    "HttpHandler",
    "ProbeTally",
    "Promoted",
    "PublishResult",
    "RepoChangeTarget",
    "RollbackResult",
    "RouteTable",
    "Rules",
    "StaticSite",
    "Target",
    "Verdict",
    "WatchRules",
    "analyse",
    "bucket",
    "watch",
]
