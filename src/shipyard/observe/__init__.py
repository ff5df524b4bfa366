"""Observability: traces (OpenTelemetry, stored in the database, exported over OTLP), the
GenAI conventions for model calls, metrics (Prometheus), the operating figures, the audit log
and retention."""

from __future__ import annotations

from shipyard.observe import _audit as audit
from shipyard.observe._audit import AuditCheck
from shipyard.observe._genai import (
    PROMPT_EVENT,
    REPLY_EVENT,
    request_attributes,
    response_attributes,
)
from shipyard.observe._metrics import ShipyardCollector, registry_for
from shipyard.observe._retention import Swept, sweep
from shipyard.observe._stats import Figure, operating_figures, parse_window
from shipyard.observe._tracing import (
    TASK_ATTRIBUTE,
    Tracing,
    otlp_json,
    redact,
    root_span_id,
    task_spans,
    trace_id_for,
)

__all__ = [
    "PROMPT_EVENT",
    "REPLY_EVENT",
    "TASK_ATTRIBUTE",
    "AuditCheck",
    "Figure",
    "ShipyardCollector",
    "Swept",
    "Tracing",
    "audit",
    "operating_figures",
    "otlp_json",
    "parse_window",
    "redact",
    "registry_for",
    "request_attributes",
    "response_attributes",
    "root_span_id",
    "sweep",
    "task_spans",
    "trace_id_for",
]
