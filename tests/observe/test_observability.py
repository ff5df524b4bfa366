"""Traces, metrics and the operating figures, from real pipeline runs and fixture histories."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import select

from generate._fake_openai import FakeOpenAI
from shipyard.config import Project, load_project
from shipyard.generate import render
from shipyard.jobs import BatchRow, load_job_kind, validate_inputs
from shipyard.model import CheckReport, CheckResult, Finding
from shipyard.observe import operating_figures, redact, registry_for
from shipyard.release import StaticSite
from shipyard.server import Gateway
from shipyard.service import Runtime, approve, submit, task_story
from shipyard.store import (
    ArtifactRow,
    AttemptRow,
    AuditRow,
    DecisionRow,
    ReleaseRow,
    SpanRow,
    TaskRow,
    ToolCallRow,
    transaction,
)
from support import PRODUCT, SETTLED, run_cli, wait_for_state, wait_until_finished

SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"


def spans_of(rt: Runtime, task_id: str) -> list[SpanRow]:
    rt.tracing.flush()
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(SpanRow).where(SpanRow.task_id == task_id).order_by(SpanRow.start_ns)
            ).all()
        )


def good_page(project: Project, data: dict[str, str]) -> str:
    kind = load_job_kind(project.root / "jobs" / "landing-page", domain="storefront")
    inputs = validate_inputs(kind, data, where="t")
    page = render(kind.outputs["index.html"], inputs, name="index.html", where="t")
    return page if page.endswith("\n") else page + "\n"


def test_a_three_attempt_task_has_the_expected_span_tree_and_gen_ai_attributes(
    project: Project, start_worker: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = {**PRODUCT, "image_alt": f"mug photo; api_key={SECRET}"}
    with FakeOpenAI() as fake:
        page = good_page(project, data)
        fake.reply("no files here", prompt_tokens=100, completion_tokens=10)
        fake.reply(
            "### FILE: index.html\n````html\n<p>untitled</p>\n````\n",
            prompt_tokens=120,
            completion_tokens=20,
        )
        fake.reply(
            f"### FILE: index.html\n````html\n{page}````\n",
            prompt_tokens=140,
            completion_tokens=900,
        )
        config = project.config_path
        config.write_text(
            config.read_text().replace('tier = "template"', 'tier = "local"', 1)
            + f'\n[tiers.local]\nprovider = "openai"\nbase_url = "{fake.url}"\n'
            + 'model = "local-model"\n'
        )
        rt = start_worker(load_project(project.root))
        task_id = submit(
            rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=data)], submitted_by="me"
        ).submitted[0]
        assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
        approve(rt, task_id, actor="alice")
        assert wait_until_finished(rt, task_id) == "published"

    spans = spans_of(rt, task_id)
    by_id = {s.span_id: s for s in spans}
    [root] = [s for s in spans if s.name == "task landing-page"]
    assert root.parent_id == "" and root.status != "ERROR"
    assert {s.trace_id for s in spans} == {root.trace_id}
    stages = [s.name for s in spans if s.parent_id == root.span_id]
    for name in ("validate", "recall", "generate 1", "generate 2", "generate 3", "verify 2",
                 "verify 3", "register", "gate", "approval", "release", "remember"):  # fmt: skip
        assert name in stages, (name, stages)
    calls = [s for s in spans if s.name == "chat local-model"]
    assert len(calls) == 3
    assert all(by_id[c.parent_id].name.startswith("generate ") for c in calls)
    last = calls[-1].attributes
    assert last["gen_ai.operation.name"] == "chat"
    assert last["gen_ai.request.model"] == "local-model"
    assert (last["gen_ai.usage.input_tokens"], last["gen_ai.usage.output_tokens"]) == (140, 900)
    assert last["gen_ai.response.finish_reasons"] == ["stop"]
    assert calls[0].attributes["error.type"] == "malformed_reply"
    checks = [s.name for s in spans if s.name.startswith("check ")]
    assert checks.count("check html") == 2  # attempts 2 and 3 reached the checks
    [tool] = [s for s in spans if s.name == "execute_tool publish"]
    assert by_id[tool.parent_id].name == "release"

    # The secret in the inputs reached the prompt, but not the stored span.
    prompt = next(e for e in calls[0].events if e["name"] == "gen_ai.content.prompt")
    assert SECRET not in prompt["attributes"]["content"]
    assert "api_key=[redacted]" in prompt["attributes"]["content"]
    assert SECRET in task_story(rt, task_id).attempts[0].prompt  # the record itself is whole

    shown = run_cli(project.root, "trace", task_id)
    assert shown.returncode == 0, shown.stderr
    assert "chat local-model" in shown.stdout and "140+900 tokens" in shown.stdout
    otlp = run_cli(project.root, "trace", task_id, "--otlp-json")
    assert '"resourceSpans"' in otlp.stdout and '"gen_ai.usage.input_tokens"' in otlp.stdout


def test_content_can_be_left_out_entirely(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    config = project.config_path
    config.write_text(config.read_text() + "\n[observe]\nrecord_content = false\n")
    rt = start_worker(load_project(project.root))
    task_id = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="me"
    ).submitted[0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    spans = spans_of(rt, task_id)
    assert spans and not any(s.events for s in spans)


@pytest.mark.parametrize(
    "secret",
    [
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "AKIAABCDEFGHIJKLMNOP",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "Bearer abcdefghijklmnopqrstuvwxyz.0123",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "password: hunter2hunter2",
    ],
)
def test_secret_shapes_are_redacted(secret: str) -> None:
    text = f"use {secret} here"
    cleaned = redact(text)
    assert "[redacted]" in cleaned and secret not in cleaned
    assert cleaned.startswith("use ") and cleaned.endswith(" here")


class Receiver:
    """A local OTLP/HTTP receiver: decodes the protobuf requests it is sent."""

    def __init__(self) -> None:
        self.names: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.names += [span.name for span in scope.spans]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set(
    project: Project,
    start_worker: Callable[..., Runtime],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    rt = start_worker(project)
    task_id = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="me"
    ).submitted[0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    rt.tracing.flush()
    assert {"validate", "generate 1", "verify 1", "check html", "gate"} <= set(receiver.names)


def test_metrics_show_the_series_from_the_records(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    task_id = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="me"
    ).submitted[0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    site = rt.target("storefront-site")
    assert isinstance(site, StaticSite)
    app = Gateway(site=site, metrics=registry_for(rt.sessions))
    text = TestClient(app).get("/metrics").text
    for series in (
        'shipyard_tasks{job_kind="landing-page",state="waiting_approval"} 1.0',
        "shipyard_approvals_waiting 1.0",
        'shipyard_stage_duration_seconds_count{stage="verify"} 1.0',
        "shipyard_attempts_per_task_count 1.0",
        'shipyard_check_results_total{check="html",outcome="passed"} 1.0',
        "shipyard_cost_usd_total",
        "shipyard_queue_depth",
    ):
        assert series in text, series
    # Releases move between states (a canary goes live, a live one is replaced): a gauge.
    assert "# TYPE shipyard_releases gauge" in text
    assert "# TYPE shipyard_rollbacks_total counter" in text


def _fixture_history(session: Any, now: datetime) -> None:
    """Six tasks with known answers (see the test)."""

    def task(n: int, state: str, minutes: float, *, kind: str = "landing-page") -> None:
        session.add(
            TaskRow(
                id=f"t-{n}", domain="storefront", job_kind=kind, input_key=f"K{n}", inputs={},
                inputs_hash="h", state=state, submitted_by="me",
                submitted_at=now - timedelta(hours=1), updated_at=now,
                finished_at=now - timedelta(hours=1) + timedelta(minutes=minutes),
                artifact_id="",
            )
        )  # fmt: skip
        session.flush()

    def attempt(task_id: str, number: int, passed: bool, usd: str, warning: bool = False) -> None:
        finding = (
            (Finding(rule="html.style", message="inline", severity="warning"),) if warning else ()
        )
        report = CheckReport(results=(CheckResult(check="html", passed=passed, findings=finding),))
        session.add(
            AttemptRow(
                task_id=task_id, number=number, provider="p", model="m", prompt_hash="x",
                prompt="", files={}, generated_at=now, passed=passed, report=report.to_dict(),
                cost_usd=Decimal(usd),
            )
        )  # fmt: skip

    task(1, "published", 10)  # first-attempt pass, released, on time
    attempt("t-1", 1, True, "0.10")
    task(2, "published", 50)  # passed on attempt 2, late, flagged (warning) and approved
    attempt("t-2", 1, False, "0.10")
    attempt("t-2", 2, True, "0.20", warning=True)
    task(3, "failed", 20)  # never passed
    attempt("t-3", 1, False, "0.30")
    task(4, "rolled_back", 30)  # released, then rolled back after 2 hours
    attempt("t-4", 1, True, "0.00")
    task(5, "rejected", 40)  # flagged and rejected
    attempt("t-5", 1, True, "0.00", warning=True)
    task(6, "waiting_approval", 0)
    attempt("t-6", 1, True, "0.00")
    session.add(
        ArtifactRow(
            id="a", job_kind="landing-page", input_key="K", files={}, size=0, created_at=now,
            first_task_id="t-1",
        )
    )  # fmt: skip
    session.flush()
    for n in (1, 2, 4):
        session.add(
            ReleaseRow(
                task_id=f"t-{n}", artifact_id="a", target="site", path="/", version="1",
                state="rolled_back" if n == 4 else "live", released_at=now - timedelta(hours=3),
                rolled_back_at=now - timedelta(hours=1) if n == 4 else None,
                detected_at=now - timedelta(hours=1, seconds=2) if n == 4 else None,
                restored_at=now - timedelta(hours=1, seconds=1, milliseconds=750)
                if n == 4 else None,
            )
        )  # fmt: skip
    for n, decision in ((1, "approved"), (2, "approved"), (4, "approved"), (5, "rejected")):
        session.add(
            DecisionRow(task_id=f"t-{n}", decision=decision, actor="a", reason="", decided_at=now)
        )
    for n in (1, 2, 4):  # three effects; only two audited with a policy decision
        key = f"t-{n}:0:publish"
        session.add(
            ToolCallRow(
                key=key, task_id=f"t-{n}", position=0, tool="publish", capability="publish",
                args={}, status="done", result={}, error="", calls=1, started_at=now,
                compensation={},
            )
        )  # fmt: skip
        if n != 4:
            session.add(
                AuditRow(
                    seq=n, at=now.isoformat(), actor="agent", action="call_tool",
                    resource="tool publish", decision="done", reason="allowed by p.cedar:1",
                    task_id=f"t-{n}", detail={"key": key}, prev_hash=f"{n}", hash=f"h{n}",
                )
            )  # fmt: skip


def test_each_operating_figure_on_a_fixture_history_with_known_answers(project: Project) -> None:
    rt = Runtime.open(project)
    now = datetime.now(UTC)
    try:
        with transaction(rt.sessions) as session:
            _fixture_history(session, now)
        with rt.sessions() as session:
            figures = {
                f.name: f.value
                for f in operating_figures(
                    session,
                    since=now - timedelta(days=1),
                    until=now + timedelta(minutes=1),
                    sla_minutes={"landing-page": 30},
                )
            }
    finally:
        rt.close()
    assert figures["tasks submitted"] == 6
    assert figures["end-to-end latency p50"] == pytest.approx(30 * 60)  # of 10, 20, 30, 40, 50
    assert figures["end-to-end latency p95"] == pytest.approx(48 * 60)
    assert figures["success rate"] == pytest.approx(3 / 6)  # 1, 2 and 4 were released
    assert figures["first-attempt pass rate"] == pytest.approx(4 / 6)  # 1, 4, 5, 6
    assert figures["mean time to recover"] == pytest.approx(2 * 3600)
    assert figures["rollback time to recover p50"] == pytest.approx(0.25)
    assert figures["safety-check false positive rate"] == pytest.approx(1 / 2)  # 2 of 2 and 5
    assert figures["safety-check false negative rate"] == pytest.approx(1 / 3)
    assert figures["cost per task (mean)"] == pytest.approx(0.7 / 6)
    assert figures["SLA adherence"] == pytest.approx(2 / 3)  # 10 and 30 of 10, 50, 30 released
    assert figures["audit completeness"] == pytest.approx(2 / 3)


def test_stats_prints_every_figure(project: Project, start_worker: Callable[..., Runtime]) -> None:
    rt = start_worker(project)
    task_id = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="me"
    ).submitted[0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    shown = run_cli(project.root, "stats", "--since", "1d")
    assert shown.returncode == 0, shown.stderr
    for name in ("end-to-end latency p50", "success rate", "first-attempt pass rate",
                 "mean time to recover", "false positive", "false negative", "cost per task",
                 "SLA adherence", "audit completeness"):  # fmt: skip
        assert name in shown.stdout, name
    bad = run_cli(project.root, "stats", "--since", "yesterday")
    assert bad.returncode == 2 and "expected a number and h, d or w" in bad.stderr
