"""Policy: who may do what, and which artifacts wait for a person at the gate."""

from __future__ import annotations

from shipyard.policy._gate import GateDecision, decide

__all__ = ["GateDecision", "decide"]
