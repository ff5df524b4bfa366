"""Observability: the audit log (tracing, metrics and the cost ledger's views come next)."""

from __future__ import annotations

from shipyard.observe import _audit as audit
from shipyard.observe._audit import AuditCheck

__all__ = ["AuditCheck", "audit"]
