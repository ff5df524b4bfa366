"""Notifications: CloudEvents POSTed from the outbox to a receiver on loopback that verifies
every signature with ``verify_webhook`` and fails on purpose (a 500, a hang past the timeout,
a refusal, a request held open while its worker is killed). Delivery is at least once with a
stable id, so a receiver that deduplicates by id sees each event exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import func, select

from shipyard.config import Project, load_project, load_settings
from shipyard.errors import ConfigError, InputError, NotFound, StateError
from shipyard.jobs import BatchRow
from shipyard.observe import (
    CONTENT_TYPE,
    Sender,
    cloudevent,
    encode,
    event_id,
    new_secret,
    record_event,
    registry_for,
    route_events,
    signing_key,
    sweep,
    verify_webhook,
    webhook_headers,
)
from shipyard.orchestrator import notify
from shipyard.service import (
    Runtime,
    approve,
    escalate_overdue,
    launch,
    notifications,
    retry_notifications,
    send_test_notification,
    steer,
    submit,
)
from shipyard.store import AuditRow, NotifyDeliveryRow, NotifyEventRow, transaction
from support import PRODUCT, SETTLED, as_person, run_cli, wait_for_state

VAR = "SHIPYARD_TEST_HOOK_SECRET"
NEEDED = "dev.shipyard.approval.needed"


# -- the receiver -------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    event: dict[str, Any] | None
    """The verified CloudEvent (None: the verification failed)."""
    error: str
    answer: str
    """What the receiver did: ok, 500, hang, hold, 400, ..."""


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: verifies each delivery, then answers as scripted (the
    next entry of ``script`` per request; ``ok`` once it is empty)."""

    secret: str
    script: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    """Ends every hang and hold."""
    held: threading.Event = field(default_factory=threading.Event)
    """Set while a ``hold`` keeps a request open."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        try:
            event: dict[str, Any] | None = verify_webhook(body, headers, self.secret)
            error = ""
        except InputError as exc:
            event, error = None, exc.message
        with self.lock:
            answer = self.script.pop(0) if self.script and event is not None else "ok"
            self.received.append(Received(headers, body, event, error, answer))
        if event is None:
            return 401, error
        if answer == "hang":
            self.release.wait(30)  # the sender's timeout is long gone by then
        if answer == "hold":
            self.held.set()
            self.release.wait(120)
        if answer.isdigit():
            return int(answer), f"on purpose: {answer}"
        return 200, "thanks"

    def events(self) -> list[dict[str, Any]]:
        """Every verified event received, in order (repeats included)."""
        with self.lock:
            return [r.event for r in self.received if r.event is not None]

    def processed(self) -> dict[str, int]:
        """Verified deliveries per event id: a receiver deduplicating on the id acts once."""
        counts: dict[str, int] = {}
        for event in self.events():
            counts[event["id"]] = counts.get(event["id"], 0) + 1
        return counts


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(secret=new_secret())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, text = found.handle(dict(self.headers.items()), body)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(text.encode())
            except OSError:
                pass  # the sender gave up on this request (a hang, or a killed worker)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield found
    finally:
        found.release.set()
        server.shutdown()
        server.server_close()


def hook_config(url: str, **settings: object) -> str:
    values = {
        "timeout_seconds": 2,
        "max_attempts": 6,
        "backoff_seconds": 0.2,
        "backoff_multiplier": 1,
        **settings,
    }
    lines = [f'url = "{url}"', f'secret_env = "{VAR}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n[notify.hook]\n" + "\n".join(lines) + "\n"


def with_hook(project: Project, receiver: Receiver, **settings: object) -> Project:
    config = project.config_path
    config.write_text(config.read_text() + hook_config(receiver.url, **settings))
    return load_project(project.root)


@pytest.fixture
def hooked(
    project: Project, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    """The example project with a [notify.hook] endpoint at the receiver, opened."""
    monkeypatch.setenv(VAR, receiver.secret)
    rt = Runtime.open(with_hook(project, receiver))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def sending(hooked: Runtime) -> Iterator[Sender]:
    """The sender a worker runs, on its own (no tasks)."""
    sender = Sender(
        hooked.sessions,
        notify.endpoints(hooked),
        source=notify.source(hooked),
        owner="test-sender",
        poll_seconds=0.05,
    )
    sender.start()
    try:
        yield sender
    finally:
        sender.stop()


def record(rt: Runtime, key: str, type: str = NEEDED, **data: object) -> str:
    with transaction(rt.sessions) as session:
        record_event(session, type=type, subject=f"tasks/{key}", data=data, key=key)
    return event_id(key)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout:g} s")
        time.sleep(0.05)


def delivery(rt: Runtime, event: str) -> NotifyDeliveryRow:
    with rt.sessions() as session:
        found = session.scalar(select(NotifyDeliveryRow).where(NotifyDeliveryRow.event_id == event))
    assert found is not None, f"no delivery of {event}"
    return found


def state_of(rt: Runtime, event: str) -> str:
    """The delivery's state ('' until a sender has routed the event)."""
    with rt.sessions() as session:
        found = session.scalar(
            select(NotifyDeliveryRow.state).where(NotifyDeliveryRow.event_id == event)
        )
    return found or ""


# -- delivery, signature, retries -----------------------------------------------------------


def test_an_event_is_delivered_signed_after_a_500_and_a_hang_with_one_id(
    hooked: Runtime, receiver: Receiver, sending: Sender
) -> None:
    receiver.script = ["500", "hang"]
    sent = record(hooked, "task-1:approval.needed:1", task_id="task-1", job_kind="landing-page")
    wait_until("delivered", lambda: state_of(hooked, sent) == "delivered")

    received = list(receiver.received)
    assert [r.answer for r in received][:3] == ["500", "hang", "ok"]
    assert all(r.event is not None for r in received), [r.error for r in received]
    assert {r.headers["webhook-id"] for r in received} == {sent}  # one id on every attempt
    assert receiver.processed() == {sent: len(received)}
    row = delivery(hooked, sent)
    assert row.attempts == len(received)  # every attempt reached the receiver, and counts
    assert (row.last_status, row.last_error) == (200, "")
    assert row.delivered_at is not None and row.leased_until is None

    event = received[-1].event
    assert event is not None
    assert received[-1].headers["Content-Type"] == CONTENT_TYPE
    assert event["specversion"] == "1.0" and event["id"] == sent
    assert event["type"] == NEEDED and event["subject"] == "tasks/task-1:approval.needed:1"
    assert event["source"] == "urn:shipyard:project:ecommerce-demo"
    assert event["datacontenttype"] == "application/json"
    assert datetime.fromisoformat(event["time"]).tzinfo is not None
    assert event["data"] == {"task_id": "task-1", "job_kind": "landing-page"}

    metrics = generate_latest(registry_for(hooked.sessions)).decode()
    assert 'shipyard_notification_deliveries_total{endpoint="hook",outcome="delivered"} 1.0' in (
        metrics
    )
    failed = len(received) - 1
    assert (
        f'shipyard_notification_deliveries_total{{endpoint="hook",outcome="failed"}} {failed}.0'
        in metrics
    )


def test_the_verifier_refuses_a_wrong_secret_an_altered_body_a_replay_and_no_headers() -> None:
    secret = new_secret()
    event = cloudevent(
        id="e-1",
        source="urn:shipyard:project:p",
        type=NEEDED,
        subject="tasks/t",
        time=datetime.now(UTC),
        data={"task_id": "t"},
    )
    body = encode(event)
    headers = webhook_headers(signing_key(secret), "e-1", body)
    assert verify_webhook(body, headers, secret) == event
    assert verify_webhook(body, {k.upper(): v for k, v in headers.items()}, secret) == event

    with pytest.raises(InputError, match="signature does not match"):
        verify_webhook(body, headers, new_secret())
    with pytest.raises(InputError, match="signature does not match"):
        verify_webhook(body.replace(b'"t"}', b'"u"}'), headers, secret)
    with pytest.raises(InputError, match="600 s in the past"):
        verify_webhook(body, headers, secret, now=int(headers["webhook-timestamp"]) + 600)
    with pytest.raises(InputError, match="no webhook-signature header"):
        verify_webhook(body, {"webhook-id": "e-1", "webhook-timestamp": "1"}, secret)
    other = webhook_headers(signing_key(secret), "e-2", body)
    with pytest.raises(InputError, match="is not the webhook-id"):
        verify_webhook(body, other, secret)
    with pytest.raises(ConfigError, match="24 to 64"):
        signing_key("whsec_c2hvcnQ=")


def test_recording_the_same_key_again_makes_no_second_event(
    hooked: Runtime, receiver: Receiver
) -> None:
    first = record(hooked, "task-2:budget.paused:1:0", type="dev.shipyard.budget.paused", n=1)
    again = record(hooked, "task-2:budget.paused:1:0", type="dev.shipyard.budget.paused", n=2)
    assert first == again
    with transaction(hooked.sessions) as session:  # twice in one transaction too
        for _ in range(2):
            record_event(session, type=NEEDED, subject="tasks/x", data={}, key="task-3:k")
    endpoints = {name: e.settings for name, e in notify.endpoints(hooked).items()}
    for _ in range(2):  # two workers routing: one delivery per endpoint still
        with transaction(hooked.sessions) as session:
            route_events(session, endpoints, source="urn:test")
    with hooked.sessions() as session:
        events = session.scalars(select(NotifyEventRow).order_by(NotifyEventRow.key)).all()
        count = session.scalar(select(func.count()).select_from(NotifyDeliveryRow))
    assert [(e.key, e.data) for e in events] == [
        ("task-2:budget.paused:1:0", {"n": 1}),  # the first record stands
        ("task-3:k", {}),
    ]
    assert count == 2

    with pytest.raises(InputError, match=r"unknown notification type 'dev\.shipyard\.test'"):
        record(hooked, "k", type="dev.shipyard.test")
    with pytest.raises(InputError, match="not JSON"):
        record(hooked, "k", when=datetime.now(UTC))


def test_a_delivery_is_dead_after_its_attempts_and_goes_again_when_retried(
    hooked: Runtime, receiver: Receiver, sending: Sender
) -> None:
    receiver.script = ["500"] * 6
    dead = record(hooked, "task-4:approval.needed:1")
    wait_until("dead", lambda: state_of(hooked, dead) == "dead")
    row = delivery(hooked, dead)
    assert (row.attempts, row.last_status) == (6, 500)
    assert row.last_error == "HTTP 500: on purpose: 500"

    receiver.script = ["400"]  # a refusal is dead at once
    refused = record(hooked, "task-5:approval.needed:1")
    wait_until("dead", lambda: state_of(hooked, refused) == "dead")
    assert (delivery(hooked, refused).attempts, delivery(hooked, refused).last_status) == (1, 400)
    dead_ones = notifications(hooked, state="dead").deliveries
    assert {d.event_id for d in dead_ones} == {dead, refused}

    assert retry_notifications(hooked, dead=True, actor="ops") == sorted(d.id for d in dead_ones)
    wait_until(
        "delivered again",
        lambda: {state_of(hooked, dead), state_of(hooked, refused)} == {"delivered"},
    )
    assert delivery(hooked, dead).attempts == 1  # a fresh count after the retry
    with hooked.sessions() as session:
        audited = session.scalars(select(AuditRow).where(AuditRow.action == "notify")).all()
    assert [(a.actor, a.decision) for a in audited] == [("ops", "retry")]
    with pytest.raises(StateError, match="was delivered"):
        retry_notifications(hooked, [dead_ones[0].id], actor="ops")
    with pytest.raises(NotFound, match="no delivery 999"):
        retry_notifications(hooked, [999], actor="ops")

    # Retention: delivered events older than the cutoff go; one still waiting stays.
    sending.stop()
    waiting = record(hooked, "task-6:approval.needed:1")
    with transaction(hooked.sessions) as session:
        route_events(
            session,
            {n: e.settings for n, e in notify.endpoints(hooked).items()},
            source="urn:test",
        )
        swept = sweep(session, before=datetime.now(UTC) + timedelta(minutes=1))
    assert swept.events == 2
    with hooked.sessions() as session:
        assert session.scalars(select(NotifyEventRow.id)).all() == [waiting]


def test_a_test_event_reports_what_the_endpoint_answered(
    hooked: Runtime, receiver: Receiver
) -> None:
    sent = send_test_notification(hooked, "hook", actor="ops")
    assert (sent.state, sent.last_status, sent.type) == ("delivered", 200, "dev.shipyard.test")
    [event] = receiver.events()
    assert event["data"]["sent_by"] == "ops" and event["subject"] == "notify/hook"

    receiver.script = ["503"]
    failed = send_test_notification(hooked, "hook", actor="ops")
    assert (failed.state, failed.attempts, failed.last_status) == ("dead", 1, 503)
    with pytest.raises(NotFound, match=r"no endpoint \[notify.other\]"):
        send_test_notification(hooked, "other", actor="ops")


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            'url = "https://hooks.example.com/x"\nsecret_env = "S"\nevents = ["dev.shipyard.nope"]',
            "unknown event type(s) 'dev.shipyard.nope'; the types are: "
            "dev.shipyard.approval.needed, dev.shipyard.approval.escalated, "
            "dev.shipyard.release.rolled_back, dev.shipyard.incident.opened, "
            "dev.shipyard.budget.paused",
        ),
        ('url = "ftp://x/hook"\nsecret_env = "S"', "must be http://HOST/... or https://HOST/"),
        (
            'url = "https://u:p@x/hook"\nsecret_env = "S"',
            "put no credentials in the url",
        ),
        (
            'url = "https://x/hook"\nsecret_env = "whsec_abc="',
            "secret_env names an environment variable",
        ),
        ('url = "https://x/hook"', "missing key 'notify.hook.secret_env'"),
    ],
)
def test_a_bad_endpoint_table_is_a_config_error_naming_the_key(
    tmp_path: Path, keys: str, message: str
) -> None:
    config = tmp_path / "shipyard.toml"
    config.write_text(f"[notify.hook]\n{keys}\n")
    with pytest.raises(ConfigError, match="notify") as caught:
        load_settings(config)
    assert message in caught.value.message


def test_a_worker_refuses_to_start_without_an_endpoints_secret(
    project: Project, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VAR, raising=False)
    rt = Runtime.open(with_hook(project, receiver))
    try:
        with pytest.raises(ConfigError, match=rf"\${VAR}, which is not set") as caught:
            launch(rt)
        assert f"set {VAR} in the worker's environment" in caught.value.hint
        monkeypatch.setenv(VAR, "not-a-secret")
        with pytest.raises(ConfigError, match=rf"\${VAR} \(\[notify.hook\] secret_env\)"):
            launch(rt)
    finally:
        rt.close()


# -- the events of a task's life ----------------------------------------------------------


def events_of(rt: Runtime, type: str) -> list[NotifyEventRow]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(NotifyEventRow)
                .where(NotifyEventRow.type == type)
                .order_by(NotifyEventRow.time)
            ).all()
        )


def one_task(rt: Runtime) -> str:
    kind = rt.jobs.get("landing-page")
    done = submit(rt, kind, [BatchRow(where="t", data=PRODUCT)], submitted_by="me", again=True)
    return done.submitted[0]


def test_waiting_escalation_and_rollback_each_record_their_event_once(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    config = project.config_path
    config.write_text(
        config.read_text().replace("escalate_after_minutes = 240", "escalate_after_minutes = 30")
    )
    rt = start_worker(load_project(project.root))
    task_id = one_task(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"

    [needed] = events_of(rt, NEEDED)
    assert needed.id == event_id(f"{task_id}:approval.needed:1")
    assert needed.subject == f"tasks/{task_id}"
    data = needed.data
    assert (data["task_id"], data["job_kind"], data["domain"]) == (
        task_id,
        "landing-page",
        "storefront",
    )
    assert (data["target"], data["link"]) == ("storefront-site", f"/console/tasks/{task_id}")
    assert (data["waiting_for"], data["attempt"]) == ("approval", 1)
    assert data["risk"] and data["approvals_required"] >= 1 and data["reason"]

    later = datetime.now(UTC) + timedelta(minutes=31)
    assert escalate_overdue(rt, now=later) == [task_id]
    assert escalate_overdue(rt, now=later + timedelta(hours=1)) == []
    [escalated] = events_of(rt, "dev.shipyard.approval.escalated")
    assert escalated.data["escalate_to"] == ["demo-operator"]
    assert "escalated to demo-operator" in escalated.data["reason"]

    for person in ("alice", "bob", "carol"):
        if approve(rt, task_id, actor=person).state != "waiting_approval":
            break
    assert wait_for_state(rt, task_id, {"published"}) == "published"
    steer(rt, task_id, "rollback", actor="ops")
    [rolled] = events_of(rt, "dev.shipyard.release.rolled_back")
    assert rolled.id == event_id(f"{task_id}:release.rolled_back")
    assert rolled.data["rolled_back_by"] == "ops" and rolled.data["reason"] == "rolled back by ops"
    assert rolled.data["path"] and rolled.data["target"] == "storefront-site"
    assert len(events_of(rt, NEEDED)) == 1  # nothing recorded twice on the way


def test_a_task_paused_on_a_budget_records_its_pause(
    project: Project, start_worker: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = project.config_path
    text = config.read_text().replace(
        'tier = "template"\n', 'tier = "local"\nchain = ["local"]\n', 1
    )
    text = text.replace("day_usd = 10.0", "day_usd = 0.001", 1)
    config.write_text(
        text + '\n[tiers.local]\nprovider = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'model = "local-model"\nmax_tokens = 1000\n'
        '[prices."local-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n'
    )
    rt = start_worker(load_project(project.root))
    task_id = one_task(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "paused"
    [paused] = events_of(rt, "dev.shipyard.budget.paused")
    assert paused.id == event_id(f"{task_id}:budget.paused:1:0")
    assert paused.data["reason"] == "paused: every tier that could serve would break a budget"
    assert any("all domains today budget $0.001" in b for b in paused.data["budgets"])


# -- a real worker: until idle, and killed --------------------------------------------------


def test_a_task_that_needs_approval_is_announced_before_worker_until_idle_exits(
    project: Project, receiver: Receiver
) -> None:
    root = with_hook(project, receiver).root
    rt = Runtime.open(load_project(root))
    try:
        task_id = one_task(rt)
    finally:
        rt.close()
    worked = run_cli(root, "worker", "--until-idle", env={VAR: receiver.secret})
    assert worked.returncode == 0, worked.stderr

    [event] = receiver.events()  # sent before the worker left
    assert event["type"] == NEEDED and event["id"] == event_id(f"{task_id}:approval.needed:1")
    assert event["data"]["task_id"] == task_id and event["data"]["waiting_for"] == "approval"
    assert event["data"]["link"] == f"/console/tasks/{task_id}"

    listed = run_cli(root, "notifications", "--state", "delivered", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["deliveries"]
    assert (row["event_id"], row["endpoint"], row["attempts"]) == (event["id"], "hook", 1)
    shown = run_cli(root, "notifications")
    assert f"{row['id']} " in shown.stdout and "approval.needed" in shown.stdout


def test_a_dead_endpoint_does_not_keep_worker_until_idle_waiting(
    project: Project, receiver: Receiver
) -> None:
    root = with_hook(project, receiver, timeout_seconds=1).root
    receiver.script = ["hang"] * 10
    rt = Runtime.open(load_project(root))
    try:
        sent = record(rt, "task-9:approval.needed:1")
    finally:
        rt.close()
    worked = run_cli(root, "worker", "--until-idle", env={VAR: receiver.secret})
    assert worked.returncode == 0, worked.stderr
    listed = run_cli(root, "notifications", "--json")
    [row] = json.loads(listed.stdout)["deliveries"]
    assert (row["event_id"], row["state"]) == (sent, "pending")  # left for the next worker
    assert row["attempts"] >= 1 and row["last_error"] == "no answer within 1 s"


def _worker(root: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "shipyard", "-C", str(root), "worker"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["held open", "after the answer"])
def test_every_event_arrives_once_by_id_across_a_sigkill(
    project: Project, receiver: Receiver, tmp_path: Path, crash: str
) -> None:
    root = with_hook(project, receiver, timeout_seconds=30).root
    rt = Runtime.open(load_project(root))
    try:
        sent = [record(rt, f"task-{n}:approval.needed:1", n=n) for n in range(5)]
        env = {VAR: receiver.secret}
        log = tmp_path / "workers.log"
        if crash == "held open":  # killed while the receiver holds the third one open
            receiver.script = ["ok", "ok", "hold"]
            first = _worker(root, env, log)
            assert receiver.held.wait(120), log.read_text()
        else:  # killed between the receiver's 200 and recording it
            first = _worker(root, {**env, "SHIPYARD_CRASHPOINTS": "notify.after_post"}, log)
        if crash == "held open":
            first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=120) == -signal.SIGKILL, log.read_text()
        receiver.release.set()  # the held request ends; its answer reaches no one

        second = _worker(root, env, log)
        try:
            wait_until(
                "all delivered",
                lambda: all(state_of(rt, e) == "delivered" for e in sent),
                timeout=180,
            )
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=120) == 0, log.read_text()
        attempts = {e: delivery(rt, e).attempts for e in sent}
    finally:
        rt.close()

    received = receiver.received
    assert all(r.event is not None for r in received), [r.error for r in received]
    processed = receiver.processed()
    assert set(processed) == set(sent)  # nothing lost, nothing else
    repeats = [e for e, n in processed.items() if n > 1]
    assert len(repeats) == 1 and len(received) == len(sent) + 1, processed  # one, sent again
    [repeat] = repeats
    assert repeat == sent[2 if crash == "held open" else 0]
    copies = [r for r in received if r.event is not None and r.event["id"] == repeat]
    assert {r.headers["webhook-id"] for r in copies} == {repeat}
    assert copies[0].body == copies[1].body  # the same event, byte for byte
    assert attempts == {e: 2 if e == repeat else 1 for e in sent}


def test_the_cli_tests_an_endpoint_lists_its_deliveries_and_retries_dead_ones(
    project: Project, receiver: Receiver
) -> None:
    root = with_hook(project, receiver).root
    ops = {VAR: receiver.secret, **as_person(root, "ops", role="operator")}
    viewer = {VAR: receiver.secret, **as_person(root, "carol", role="viewer")}
    refused = run_cli(root, "notifications", "test", "hook", env=viewer)
    assert refused.returncode == 6, refused.stderr  # sending is an operator's
    assert "viewer" in refused.stderr and not receiver.received

    receiver.script = ["410"]
    failed = run_cli(root, "notifications", "test", "hook", env=ops)
    assert failed.returncode == 1, failed.stderr
    assert "not delivered to hook: HTTP 410: on purpose: 410" in failed.stderr
    dead = run_cli(root, "notifications", "--state", "dead", "--json", env=viewer)
    [row] = json.loads(dead.stdout)["deliveries"]
    assert (row["type"], row["attempts"], row["last_status"]) == ("dev.shipyard.test", 1, 410)
    assert f"`shipyard notifications retry {row['id']}`" in failed.stderr
    [event] = receiver.events()
    assert event["data"]["sent_by"] == "ops"

    retried = run_cli(root, "notifications", "retry", "--dead", env=ops)
    assert retried.returncode == 0, retried.stderr
    assert f"1 delivery due again: {row['id']}" in retried.stdout
    pending = run_cli(root, "notifications", "--state", "pending", "--json", env=ops)
    assert [r["id"] for r in json.loads(pending.stdout)["deliveries"]] == [row["id"]]

    passed = run_cli(root, "notifications", "test", "hook", env=ops)
    assert passed.returncode == 0, passed.stderr
    assert "delivered to hook: HTTP 200" in passed.stdout
    table = run_cli(root, "notifications", env=ops)
    assert "test" in table.stdout and "delivered" in table.stdout and "pending" in table.stdout

    nothing = run_cli(root, "notifications", "retry", env=ops)
    assert nothing.returncode == 2 and "name the deliveries to retry" in nothing.stderr
    bad = run_cli(root, "notifications", "--state", "lost", env=ops)
    assert bad.returncode == 2 and "unknown delivery state 'lost'" in bad.stderr
    unknown = run_cli(root, "notifications", "test", "nope", env=ops)
    assert unknown.returncode == 4 and "no endpoint [notify.nope]" in unknown.stderr
