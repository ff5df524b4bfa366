"""Observability: traces (OpenTelemetry, stored in the database, exported over OTLP),
metrics (Prometheus) and the audit log."""

from __future__ import annotations

from shipyard.observe import _audit as audit
from shipyard.observe._audit import AuditCheck
from shipyard.observe._metrics import ShipyardCollector, registry_for
from shipyard.observe._stats import Figure, operating_figures, parse_window
from shipyard.observe._tracing import (
    TASK_ATTRIBUTE,
    Tracing,
    otlp_json,
    redact,
    root_span_id,
    trace_id_for,
)

__all__ = [
    "TASK_ATTRIBUTE",
    "AuditCheck",
    "Figure",
    "ShipyardCollector",
    "Tracing",
    "audit",
    "operating_figures",
    "otlp_json",
    "parse_window",
    "redact",
    "registry_for",
    "root_span_id",
    "trace_id_for",
]
