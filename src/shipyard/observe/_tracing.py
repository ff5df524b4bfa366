"""Tracing with the OpenTelemetry SDK: one trace per task, stored in Shipyard's database.

Every task's spans share a trace id derived from the task id, so the stages of a task that
ran in several workflows, workers and restarts land in one trace; their parent is the task's
root span (also derived from the task id), which is emitted when the task ends. Model calls
follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*`` attributes); prompts and
replies are span events, with secret shapes redacted, or left out entirely when
``[observe] record_content = false``.

Spans go to the ``spans`` table through a batch processor (so ``shipyard trace`` needs
nothing else running), and over OTLP/HTTP too when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace import Span as OtelSpan
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard import __version__
from shipyard.store import SpanRow

__all__ = [
    "TASK_ATTRIBUTE",
    "Tracing",
    "redact",
    "root_span_id",
    "trace_id_for",
]

TASK_ATTRIBUTE = "shipyard.task.id"

_SECRETS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]{16,}"),
    re.compile(
        r"(?i)\b([\w-]*(?:api[_-]?key|secret|token|passw(?:or)?d|access[_-]?key)[\w-]*)"
        r"(\s*[:=]\s*)[\"']?[^\s\"']{8,}"
    ),
]


def redact(text: str) -> str:
    """``text`` with anything shaped like a credential replaced by ``[redacted]``."""
    for pattern in _SECRETS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


def trace_id_for(task_id: str) -> int:
    """The task's 128-bit trace id (the same in every process)."""
    return int.from_bytes(hashlib.sha256(f"trace:{task_id}".encode()).digest()[:16], "big") or 1


def root_span_id(task_id: str) -> int:
    """The span id of the task's root span."""
    return int.from_bytes(hashlib.sha256(f"span:{task_id}".encode()).digest()[:8], "big") or 1


_preset: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "shipyard_preset_ids", default=None
)


class _Ids(RandomIdGenerator):
    """Random ids, except for a task's root span, whose ids derive from the task."""

    def generate_span_id(self) -> int:
        preset = _preset.get()
        return preset[1] if preset else super().generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _preset.get()
        return preset[0] if preset else super().generate_trace_id()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


class DatabaseExporter(SpanExporter):
    """Writes finished spans to the ``spans`` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from shipyard.store import SpanRow, transaction

        try:
            with transaction(self.sessions) as session:
                for span in spans:
                    context = span.get_span_context()
                    if context is None:
                        continue
                    attributes = dict(span.attributes or {})
                    session.add(
                        SpanRow(
                            trace_id=_hex(context.trace_id, 32),
                            span_id=_hex(context.span_id, 16),
                            parent_id=_hex(span.parent.span_id, 16) if span.parent else "",
                            task_id=str(attributes.get(TASK_ATTRIBUTE, "")),
                            name=span.name,
                            kind=span.kind.name,
                            start_ns=int(span.start_time or 0),
                            end_ns=int(span.end_time or 0),
                            status=span.status.status_code.name,
                            attributes=_jsonable(attributes),
                            events=[
                                {
                                    "name": e.name,
                                    "time_ns": e.timestamp,
                                    "attributes": _jsonable(dict(e.attributes or {})),
                                }
                                for e in span.events
                            ],
                        )
                    )
        except Exception:  # a tracing failure must never take the pipeline down
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    result: dict[str, Any] = json.loads(json.dumps(plain, default=str))
    return result


class Tracing:
    """A project's tracer: spans for tasks, stages, model calls, checks and tool calls."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        project: str,
        record_content: bool = True,
        enabled: bool = True,
        extra_exporters: Sequence[SpanExporter] = (),
    ) -> None:
        self.record_content = record_content
        self.enabled = enabled
        self.provider = TracerProvider(
            resource=Resource.create(
                {
                    "service.name": "shipyard",
                    "service.version": __version__,
                    "shipyard.project": project,
                }
            ),
            id_generator=_Ids(),
        )
        if enabled:
            self.provider.add_span_processor(BatchSpanProcessor(DatabaseExporter(sessions)))
            for exporter in extra_exporters:
                self.provider.add_span_processor(BatchSpanProcessor(exporter))
            if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            ):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("shipyard", __version__)

    def _parent(self, task_id: str, parent: OtelSpan | None = None) -> Context:
        if parent is None:
            current = trace.get_current_span()
            if current.is_recording() and current.get_span_context().trace_id == trace_id_for(
                task_id
            ):
                parent = current
        if parent is not None:
            return trace.set_span_in_context(parent)
        root = SpanContext(
            trace_id=trace_id_for(task_id),
            span_id=root_span_id(task_id),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(NonRecordingSpan(root))

    @contextmanager
    def span(
        self,
        task_id: str,
        name: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        parent: OtelSpan | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Iterator[OtelSpan]:
        """A span of the task's trace (under its root, or under ``parent``)."""
        if not self.enabled:
            yield trace.INVALID_SPAN
            return
        with self.tracer.start_as_current_span(
            name,
            context=self._parent(task_id, parent),
            kind=kind,
            attributes={TASK_ATTRIBUTE: task_id, **(attributes or {})},
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            yield span

    def finished_span(
        self,
        task_id: str,
        name: str,
        *,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any] | None = None,
        parent: OtelSpan | None = None,
        error: str = "",
    ) -> None:
        """A span for something already timed (a check inside the sandbox run)."""
        if not self.enabled:
            return
        span = self.tracer.start_span(
            name,
            context=self._parent(task_id, parent),
            attributes={TASK_ATTRIBUTE: task_id, **(attributes or {})},
            start_time=start_ns,
        )
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end_ns)

    def task_root(
        self, task_id: str, *, job_kind: str, domain: str, state: str, started: datetime
    ) -> None:
        """Emit the task's root span (ids derived from the task) when the task ends."""
        if not self.enabled:
            return
        token = _preset.set((trace_id_for(task_id), root_span_id(task_id)))
        try:
            span = self.tracer.start_span(
                f"task {job_kind}",
                context=Context(),
                attributes={
                    TASK_ATTRIBUTE: task_id,
                    "shipyard.job_kind": job_kind,
                    "shipyard.domain": domain,
                    "shipyard.task.state": state,
                },
                start_time=int(started.timestamp() * 1e9),
            )
        finally:
            _preset.reset(token)
        if state in ("failed", "error", "compensated"):
            span.set_status(Status(StatusCode.ERROR, state))
        span.end(end_time=time.time_ns())

    def content(self, span: OtelSpan, event: str, text: str, **attributes: Any) -> None:
        """A prompt or reply as a span event, redacted (or left out by configuration)."""
        if not self.record_content or not span.is_recording():
            return
        span.add_event(event, {"content": redact(text), **attributes})

    def flush(self, timeout_ms: int = 5000) -> None:
        self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        self.provider.shutdown()


def timed(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """Run ``fn``; (its result, start ns, end ns)."""
    start = time.time_ns()
    result = fn()
    return result, start, time.time_ns()


_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_otlp_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _otlp_attributes(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _otlp_value(v)} for k, v in values.items()]


def otlp_json(spans: Sequence[Any], *, project: str) -> dict[str, Any]:
    """Stored spans as an OTLP/JSON ``ExportTraceServiceRequest`` (what collectors accept)."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": _otlp_attributes(
                        {
                            "service.name": "shipyard",
                            "service.version": __version__,
                            "shipyard.project": project,
                        }
                    )
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "shipyard", "version": __version__},
                        "spans": [
                            {
                                "traceId": s.trace_id,
                                "spanId": s.span_id,
                                "parentSpanId": s.parent_id,
                                "name": s.name,
                                "kind": _KINDS.get(s.kind, 1),
                                "startTimeUnixNano": str(s.start_ns),
                                "endTimeUnixNano": str(s.end_ns),
                                "attributes": _otlp_attributes(s.attributes),
                                "events": [
                                    {
                                        "timeUnixNano": str(e["time_ns"]),
                                        "name": e["name"],
                                        "attributes": _otlp_attributes(e["attributes"]),
                                    }
                                    for e in s.events
                                ],
                                "status": {"code": _STATUS.get(s.status, 0)},
                            }
                            for s in spans
                        ],
                    }
                ],
            }
        ]
    }


def task_spans(session: Session, task_id: str) -> list[SpanRow]:
    """A task's spans, oldest first, each once.

    Spans are found by the task attribute and by the task's trace id (a span recorded before
    the task id was on it still belongs); a step that re-ran after a crash may have stored a
    span twice under the same id, and it is shown once.
    """
    trace_id = f"{trace_id_for(task_id):032x}"
    rows = session.scalars(
        select(SpanRow)
        .where(or_(SpanRow.task_id == task_id, SpanRow.trace_id == trace_id))
        .order_by(SpanRow.start_ns, SpanRow.span_id)
    ).all()
    return list({row.span_id: row for row in rows}.values())
