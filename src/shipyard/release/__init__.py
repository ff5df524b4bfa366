"""Releases: targets that put artifacts live, with a switch that can be undone."""

from __future__ import annotations

from shipyard.release.targets.static_site import PublishResult, RollbackResult, StaticSite

__all__ = ["PublishResult", "RollbackResult", "StaticSite"]
