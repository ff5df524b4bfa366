"""Observability: traces (OpenTelemetry, stored in the database, exported over OTLP), the
GenAI conventions for model calls, metrics (Prometheus), the operating figures, the audit log,
retention, and notifications (CloudEvents webhooks sent from a durable outbox)."""

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
from shipyard.observe._outbox import (
    DELIVERY_STATES,
    TEST_EVENT_TYPE,
    Answer,
    Backoff,
    Claim,
    Delivery,
    claim_next,
    deliveries,
    event_id,
    record_event,
    record_outcome,
    record_test_event,
    retry_deliveries,
    route_events,
    source_for,
    sweep_events,
    unrouted_events,
)
from shipyard.observe._retention import Swept, sweep
from shipyard.observe._sender import Endpoint, Sender, lease_seconds, post, send, send_now
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
from shipyard.observe._webhooks import (
    CONTENT_TYPE,
    DEFAULT_TOLERANCE_SECONDS,
    SPECVERSION,
    cloudevent,
    encode,
    new_secret,
    sign,
    signing_key,
    verify_webhook,
    webhook_headers,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_TOLERANCE_SECONDS",
    "DELIVERY_STATES",
    "PROMPT_EVENT",
    "REPLY_EVENT",
    "SPECVERSION",
    "TASK_ATTRIBUTE",
    "TEST_EVENT_TYPE",
    "Answer",
    "AuditCheck",
    "Backoff",
    "Claim",
    "Delivery",
    "Endpoint",
    "Figure",
    "Sender",
    "ShipyardCollector",
    "Swept",
    "Tracing",
    "audit",
    "claim_next",
    "cloudevent",
    "deliveries",
    "encode",
    "event_id",
    "lease_seconds",
    "new_secret",
    "operating_figures",
    "otlp_json",
    "parse_window",
    "post",
    "record_event",
    "record_outcome",
    "record_test_event",
    "redact",
    "registry_for",
    "request_attributes",
    "response_attributes",
    "retry_deliveries",
    "root_span_id",
    "route_events",
    "send",
    "send_now",
    "sign",
    "signing_key",
    "source_for",
    "sweep",
    "sweep_events",
    "task_spans",
    "trace_id_for",
    "unrouted_events",
    "verify_webhook",
    "webhook_headers",
]
