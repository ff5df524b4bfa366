"""Policy: who may do what (Cedar, default deny), risk, and how many people approve.

``Policies`` loads and validates a project's .cedar files against Shipyard's schema;
``gate`` turns a checked artifact into auto / needs N approvals / deny; ``entities`` builds
the principals and resources a request names.
"""

from __future__ import annotations

from shipyard.policy import _entities as entities
from shipyard.policy._cedar import DEFAULT_POLICY, SCHEMA, Policies, Request, Verdict, uid
from shipyard.policy._gate import (
    MAX_APPROVALS,
    GateDecision,
    assess_risk,
    change_context,
    gate,
)

__all__ = [
    "DEFAULT_POLICY",
    "MAX_APPROVALS",
    "SCHEMA",
    "GateDecision",
    "Policies",
    "Request",
    "Verdict",
    "assess_risk",
    "change_context",
    "entities",
    "gate",
    "uid",
]
