"""Effects outside Shipyard: journalled tool calls that act once, and the saga that undoes
completed effects in reverse when a later one fails. The far side is a real HTTP service on
loopback that honours Idempotency-Key, as a payment or messaging API would."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shipyard.config import Project, load_project
from shipyard.jobs import BatchRow
from shipyard.observe import audit
from shipyard.service import Runtime, approve, submit, task_story
from shipyard.store import TaskRow, ToolCallRow
from support import (
    PRODUCT,
    SETTLED,
    as_person,
    copy_example,
    run_cli,
    wait_for_state,
    wait_until_finished,
)


@dataclass
class Service:
    """Records every request; acts once per Idempotency-Key; fails the paths it is told to."""

    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    acted: dict[str, str] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, key: str, body: dict[str, Any]) -> int:
        with self.lock:
            self.requests.append((path, key, body))
            if path in self.failing:
                return self.failing[path]
            self.acted.setdefault(key, path)  # a repeated key does not act again
            return 200

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


@pytest.fixture
def service() -> Iterator[tuple[Service, str]]:
    state = Service()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            status = state.handle(self.path, self.headers.get("Idempotency-Key", ""), body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def with_effects(root: Path, base: str) -> None:
    job = root / "jobs" / "landing-page" / "job.toml"
    job.write_text(
        job.read_text()
        + f"""
[[effects]]
tool = "http"
url = "{base}/published"
body = {{ sku = "{{{{ sku }}}}", page = "{{{{ release.url_path }}}}" }}
undo_url = "{base}/unpublished"

[[effects]]
tool = "http"
url = "{base}/announce"
body = {{ sku = "{{{{ sku }}}}", task = "{{{{ task_id }}}}" }}
"""
    )


def run_one(rt: Runtime) -> str:
    result = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="me"
    )
    task_id = result.submitted[0]
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    approve(rt, task_id, actor="alice")
    wait_until_finished(rt, task_id)
    return task_id


def business_key(rt: Runtime, task_id: str) -> str:
    """The task's business key: what its effects' idempotency keys derive from."""
    with rt.sessions() as session:
        return str(session.get_one(TaskRow, task_id).business_key)


def calls(rt: Runtime, task_id: str) -> list[tuple[int, str, str, int]]:
    with rt.sessions() as session:
        rows = session.scalars(
            select(ToolCallRow).where(ToolCallRow.task_id == task_id).order_by(ToolCallRow.position)
        ).all()
    return [(r.position, r.tool, r.status, r.calls) for r in rows]


def test_effects_run_in_order_each_once_with_its_key(
    project: Project, start_worker: Callable[..., Runtime], service: tuple[Service, str]
) -> None:
    state, base = service
    with_effects(project.root, base)
    rt = start_worker(load_project(project.root))
    task_id = run_one(rt)
    assert task_story(rt, task_id).task.state == "published"
    assert state.paths() == ["/published", "/announce"]
    (_, key, body), (_, _, announce) = state.requests
    assert key == f"{business_key(rt, task_id)}:1:http"
    assert key.startswith("landing-page:SKU-101:")  # the business key, not the task id
    assert body == {"sku": "SKU-101", "page": "/products/sku-101/"}
    assert announce["task"] == task_id
    assert calls(rt, task_id) == [
        (0, "publish", "done", 1),
        (1, "http", "done", 1),
        (2, "http", "done", 1),
    ]


def test_a_failed_effect_undoes_the_completed_ones_in_reverse(
    project: Project, start_worker: Callable[..., Runtime], service: tuple[Service, str]
) -> None:
    state, base = service
    state.failing["/announce"] = 400
    with_effects(project.root, base)
    rt = start_worker(load_project(project.root))
    task_id = run_one(rt)

    story = task_story(rt, task_id)
    assert story.task.state == "compensated"
    assert "effect 2 failed: http: POST " in story.task.error and "HTTP 400" in story.task.error
    # The webhook was told to undo (with its own key), then the page was withdrawn.
    assert state.paths() == ["/published", "/announce", "/unpublished"]
    assert state.requests[2][1] == f"{business_key(rt, task_id)}:1:http:undo"
    assert calls(rt, task_id) == [
        (0, "publish", "compensated", 1),
        (1, "http", "compensated", 1),
        (2, "http", "failed", 1),
    ]
    assert story.release is not None and story.release.state == "withdrawn"
    site = project.root / ".shipyard" / "sites" / "storefront-site" / "current"
    assert not (site / "products" / "sku-101").exists()
    with rt.sessions() as session:
        undone = [
            e.resource for e in audit.entries(session, task_id=task_id) if e.action == "compensate"
        ]
    assert undone == ["tool http", "tool publish"]  # newest first


def test_a_tool_denied_by_policy_never_acts(
    project: Project, start_worker: Callable[..., Runtime], service: tuple[Service, str]
) -> None:
    state, base = service
    with_effects(project.root, base)
    policy = project.root / "policies" / "storefront.cedar"
    policy.write_text(
        policy.read_text()
        + '\n@id("no-webhooks")\nforbid(principal, action == Action::"call_tool", resource)\n'
        'when { context.capability == "http" };\n'
    )
    rt = start_worker(load_project(project.root))
    task_id = run_one(rt)
    story = task_story(rt, task_id)
    assert story.task.state == "compensated"
    assert "forbidden by storefront.cedar" in story.task.error and "no-webhooks" in story.task.error
    assert state.requests == []  # nothing reached the service
    assert calls(rt, task_id)[0][2] == "compensated"  # the page was withdrawn again


@pytest.mark.slow
@pytest.mark.parametrize(("point", "requests"), [("tool.http.after", 2), ("tool.http.called", 3)])
def test_killed_around_a_tool_call_acts_once(
    tmp_path: Path, database: str, service: tuple[Service, str], point: str, requests: int
) -> None:
    state, base = service
    root = copy_example(tmp_path / "shop")
    with_effects(root, base)
    inputs = [a for k, v in PRODUCT.items() for a in ("-i", f"{k}={v}")]
    owner, operator = as_person(root, "shop-owner"), as_person(root, "demo-operator")
    add = run_cli(
        root, "submit", "landing-page", *inputs, "--as", "shop-owner", "--json", env=owner
    )
    assert add.returncode == 0, add.stderr
    task_id = json.loads(add.stdout)["submitted"][0]
    assert run_cli(root, "worker", "--until-idle").returncode == 0
    assert run_cli(root, "approve", task_id, "--as", "demo-operator", env=operator).returncode == 0

    killed = run_cli(root, "worker", "--until-idle", env={"SHIPYARD_CRASHPOINTS": point})
    assert killed.returncode == -signal.SIGKILL
    assert run_cli(root, "worker", "--until-idle").returncode == 0

    rt = Runtime.open(load_project(root))
    try:
        assert task_story(rt, task_id).task.state == "published"
        journal = calls(rt, task_id)
        key = business_key(rt, task_id)
    finally:
        rt.close()
    # Killed after recording: the journal replays the call. Killed between acting and
    # recording: the call goes again with the same key, and the service acts once.
    assert len(state.requests) == requests
    keys = [key for path, key, _ in state.requests if path == "/published"]
    assert set(keys) == {f"{key}:1:http"}
    assert list(state.acted.values()).count("/published") == 1
    assert journal[1] == (1, "http", "done", 2 if point == "tool.http.called" else 1)
