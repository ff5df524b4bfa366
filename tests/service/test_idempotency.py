"""Submitting twice makes nothing twice, on both databases.

The CLI re-running a CSV gets the rows' existing tasks (``--again`` makes new ones); the API
honours ``Idempotency-Key`` (the same key and body: the first answer; another body: 409),
also for a retry after the answer was lost; and a task's effects carry keys derived from
its business key, so the service on the far side sees the same call for the same business.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from dbos import DBOSClient
from sqlalchemy import delete, func, select

from shipyard.config import Project, load_project
from shipyard.jobs import BatchRow, inputs_hash, validate_inputs
from shipyard.server import PROBLEM, create_api, create_token
from shipyard.service import Runtime, approve, business_key, submit, task_story
from shipyard.store import TaskRow
from support import PRODUCT, SETTLED, as_person, run_cli, wait_for_state, wait_until_finished

OTHER = {**PRODUCT, "sku": "SKU-102", "name": "Camp Mug", "image": "/images/sku-102.jpg"}
"""A second valid row."""


def _tasks(rt: Runtime, *, valid: bool = True) -> list[str]:
    with rt.sessions() as session:
        query = select(TaskRow.id).order_by(TaskRow.submitted_at, TaskRow.id)
        if valid:
            query = query.where(TaskRow.state != "invalid")
        return list(session.scalars(query))


def _workflows(project: Project) -> list[str]:
    """Ids of every durable workflow DBOS holds for the project."""
    client = DBOSClient(system_database_url=project.system_database_url)
    try:
        found = client.list_workflows(load_input=False, load_output=False)
    finally:
        client.destroy()
    return sorted(w.workflow_id for w in found)


def _expected_key(rt: Runtime, data: dict[str, Any], generation: int = 1) -> str:
    kind = rt.jobs.get("landing-page")
    inputs = validate_inputs(kind, data, where="test")
    return business_key(kind.name, str(inputs["sku"]), inputs_hash(inputs), generation)


# -- the CLI ----------------------------------------------------------------------------------


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    header = list(PRODUCT)
    lines = [",".join(header)]
    lines += [",".join(f'"{row.get(k, "")}"' for k in header) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rerunning_a_csv_returns_its_tasks_and_again_makes_new_ones(project: Project) -> None:
    batch = _csv(project.root / "rows.csv", [PRODUCT, {**PRODUCT, "price": "free"}, OTHER])
    args = ("submit", "landing-page", "--batch", str(batch), "--as", "me")
    me = as_person(project.root, "me")

    first = run_cli(project.root, *args, "--json", env=me)
    assert first.returncode == 3, first.stderr  # one row refused, as always
    made = json.loads(first.stdout)
    assert len(made["submitted"]) == 2 and len(made["rejected"]) == 1
    assert made["existing"] == []
    workflows = _workflows(project)
    assert len(workflows) == 2

    rt = Runtime.open(project)
    try:
        keys = [_expected_key(rt, PRODUCT), _expected_key(rt, OTHER)]
        assert [made["business_keys"][t] for t in made["submitted"]] == keys

        again = run_cli(project.root, *args, "--json", env=me)
        assert again.returncode == 3, again.stderr  # the exit status is today's
        found = json.loads(again.stdout)
        assert found["submitted"] == made["submitted"]  # the same tasks, not new ones
        assert [(e["task_id"], e["state"]) for e in found["existing"]] == [
            (t, "queued") for t in made["submitted"]
        ]
        assert len(found["rejected"]) == 1  # the bad row is recorded again, as before
        assert _workflows(project) == workflows  # no new workflow
        assert sorted(_tasks(rt)) == sorted(made["submitted"])

        shown = run_cli(project.root, *args, env=me)
        assert shown.returncode == 3
        assert "0 submitted, 2 already submitted, 1 rejected" in shown.stdout
        for line, task_id, key in (
            ("row 1 (line 2)", made["submitted"][0], keys[0]),
            ("row 3 (line 4)", made["submitted"][1], keys[1]),
        ):
            assert f"existing rows.csv {line}: {task_id} {key} (queued)" in shown.stdout
        assert "--again" in shown.stdout

        fresh = run_cli(project.root, *args, "--again", "--json", env=me)
        assert fresh.returncode == 3, fresh.stderr
        renewed = json.loads(fresh.stdout)
        assert renewed["existing"] == []
        assert set(renewed["submitted"]).isdisjoint(made["submitted"])
        assert [renewed["business_keys"][t] for t in renewed["submitted"]] == [
            _expected_key(rt, PRODUCT, 2),
            _expected_key(rt, OTHER, 2),
        ]
        assert len(_workflows(project)) == 4
        assert sorted(_tasks(rt)) == sorted(made["submitted"] + renewed["submitted"])

        # The newest generation is the one a plain re-run now returns.
        latest = json.loads(run_cli(project.root, *args, "--json", env=me).stdout)
        assert latest["submitted"] == renewed["submitted"]
    finally:
        rt.close()


def test_a_row_repeated_in_one_batch_is_one_task(project: Project) -> None:
    rt = Runtime.open(project)
    try:
        kind = rt.jobs.get("landing-page")
        rows = [BatchRow(where=f"row {n}", data=PRODUCT) for n in (1, 2)]
        result = submit(rt, kind, rows, submitted_by="me")
        [task_id] = result.submitted
        assert result.new == [task_id]
        assert [(e.where, e.task_id, e.batch_id) for e in result.existing] == [
            ("row 2", task_id, result.batch_id)
        ]
        twice = submit(rt, kind, rows, submitted_by="me", again=True)
        assert len(twice.new) == 2
        assert sorted(twice.business_keys.values()) == [
            _expected_key(rt, PRODUCT, 2),
            _expected_key(rt, PRODUCT, 3),
        ]
    finally:
        rt.close()


def test_two_submissions_of_the_same_row_at_once_make_one_task(project: Project) -> None:
    rt = Runtime.open(project)
    try:
        kind = rt.jobs.get("landing-page")
        start = threading.Barrier(2)
        results: list[list[str]] = []

        def one() -> None:
            start.wait()
            done = submit(rt, kind, [BatchRow(where="t", data=PRODUCT)], submitted_by="me")
            results.append(done.submitted)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(results) == 2 and results[0] == results[1]
        assert _tasks(rt) == results[0]
    finally:
        rt.close()


# -- the API ----------------------------------------------------------------------------------


@contextmanager
def _serving(rt: Runtime) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_api(rt), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class Api:
    rt: Runtime
    client: httpx.Client
    tokens: dict[str, str]

    def post(
        self, path: str, body: dict[str, Any], *, key: str = "", as_: str = "alice"
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[as_]}"}
        if key:
            headers["Idempotency-Key"] = key
        return self.client.post(path, json=body, headers=headers)


@pytest.fixture
def api(project: Project) -> Iterator[Api]:
    """The API on loopback over the example; no worker runs (submissions only queue)."""
    rt = Runtime.open(project)
    try:
        tokens = {p: create_token(rt, p, "operator", actor="ops")[1] for p in ("alice", "me")}
        with _serving(rt) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield Api(rt=rt, client=client, tokens=tokens)
    finally:
        rt.close()


ONE = {"job_kind": "landing-page", "inputs": PRODUCT}


def test_the_same_key_and_body_get_the_first_answer(api: Api) -> None:
    first = api.post("/tasks", ONE, key="order-1001")
    assert first.status_code == 201, first.text
    made = first.json()
    [task_id] = made["submitted"]
    assert made["existing"] == [] and made["business_keys"] == {
        task_id: _expected_key(api.rt, PRODUCT)
    }

    retried = api.post("/tasks", ONE, key="order-1001")
    assert (retried.status_code, retried.json()) == (201, made)  # batch id and all
    assert _tasks(api.rt) == [task_id]

    other = api.post("/tasks", {**ONE, "inputs": {**PRODUCT, "price": "19.00"}}, key="order-1001")
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    problem = other.json()
    assert problem["type"] == PROBLEM + "conflict" and "order-1001" in problem["detail"]
    assert problem["hint"]
    assert api.post("/tasks", {**ONE, "again": True}, key="order-1001").status_code == 409
    assert _tasks(api.rt) == [task_id]

    # Keys are each person's: another person's same key is another request, and its row
    # (the same inputs) returns the task they already have.
    theirs = api.post("/tasks", ONE, key="order-1001", as_="me")
    assert theirs.status_code == 201
    assert theirs.json()["submitted"] == [task_id]
    assert [e["task_id"] for e in theirs.json()["existing"]] == [task_id]
    assert theirs.json()["batch_id"] != made["batch_id"]


def test_inputs_submitted_again_return_their_task_unless_again(api: Api) -> None:
    [task_id] = api.post("/tasks", ONE).json()["submitted"]
    found = api.post("/tasks", ONE)
    assert found.status_code == 201
    assert found.json()["submitted"] == [task_id]
    assert found.json()["existing"] == [
        {"where": "request", "task_id": task_id, "state": "queued", "batch_id": ANY_BATCH}
    ]
    fresh = api.post("/tasks", {**ONE, "again": True}).json()
    [renewed] = fresh["submitted"]
    assert renewed != task_id and fresh["existing"] == []
    assert fresh["business_keys"][renewed] == _expected_key(api.rt, PRODUCT, 2)

    rows = {"job_kind": "landing-page", "rows": [PRODUCT, OTHER, {"sku": "x"}]}
    batch = api.post("/tasks/batch", rows, key="rows-1").json()
    assert batch["submitted"][0] == renewed  # the newest generation
    assert [e["where"] for e in batch["existing"]] == ["row 1"]
    assert [r["where"] for r in batch["rejected"]] == ["row 3"]
    assert api.post("/tasks/batch", rows, key="rows-1").json() == batch
    assert len(_tasks(api.rt)) == 3


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith("b-")


ANY_BATCH: Any = _Any()


def test_a_retry_after_the_answer_was_lost_gets_the_recorded_answer(api: Api) -> None:
    rows = [PRODUCT, OTHER]
    # The submission is recorded with its key, then the process dies before answering.
    lost = submit(
        api.rt,
        api.rt.jobs.get("landing-page"),
        [BatchRow(where=f"row {n}", data=row) for n, row in enumerate(rows, start=1)],
        submitted_by="alice",
        idempotency_key="csv-upload-7",
    )
    assert not lost.replayed and len(lost.submitted) == 2
    retried = api.post(
        "/tasks/batch", {"job_kind": "landing-page", "rows": rows}, key="csv-upload-7"
    )
    assert retried.status_code == 201, retried.text
    assert retried.json() == lost.as_data()
    assert sorted(_tasks(api.rt)) == sorted(lost.submitted)


def test_the_openapi_document_declares_the_header(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    for path in ("/api/v1/tasks", "/api/v1/tasks/batch"):
        post = document["paths"][path]["post"]
        [header] = [p for p in post["parameters"] if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key" and not header.get("required", False)
        assert "409" in post["responses"]
    bad = api.post("/tasks", ONE, key="two words")
    assert bad.status_code == 422


# -- effects ----------------------------------------------------------------------------------


@dataclass
class Receiver:
    """An outside service that acts once per Idempotency-Key, as a shipping API would."""

    keys: list[str] = field(default_factory=list)
    acted: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = self.headers.get("Idempotency-Key", "")
            with state.lock:
                state.keys.append(key)
                state.acted.setdefault(key, len(state.acted) + 1)  # one label per key
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"label": state.acted[key]}).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _ship(rt: Runtime, *, again: bool = False) -> tuple[str, list[str]]:
    """Submit the product; if that made a task, take it through approval to its end."""
    result = submit(
        rt,
        rt.jobs.get("landing-page"),
        [BatchRow(where="t", data=PRODUCT)],
        submitted_by="me",
        again=again,
    )
    [task_id] = result.submitted
    if result.new:
        assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
        approve(rt, task_id, actor="alice")
        assert wait_until_finished(rt, task_id) == "published"
    return task_id, result.new


def test_effect_keys_follow_the_business_key_not_the_task(
    project: Project, start_worker: Callable[..., Runtime], receiver: tuple[Receiver, str]
) -> None:
    state, base = receiver
    job = project.root / "jobs" / "landing-page" / "job.toml"
    effect = (
        f'[[effects]]\ntool = "http"\nurl = "{base}/labels"\nbody = {{ sku = "{{{{ sku }}}}" }}'
    )
    job.write_text(job.read_text() + "\n" + effect + "\n")
    rt = start_worker(load_project(project.root))
    key = f"{_expected_key(rt, PRODUCT)}:1:http"

    first, made = _ship(rt)
    assert made == [first]
    assert state.keys == [key]

    # Submitted again: the same task, and nothing reaches the service.
    assert _ship(rt) == (first, [])
    assert state.keys == [key]

    # Shipyard loses its record of the task (a restore from a backup taken before it) and
    # the row is submitted again: a new task, the same business key, the same call outside.
    with rt.sessions.begin() as session:
        session.execute(delete(TaskRow).where(TaskRow.id == first))
    second, made = _ship(rt)
    assert made == [second] and second != first
    assert state.keys == [key, key]
    assert state.acted == {key: 1}  # one label

    # --again is a new generation: a new key, a new call.
    third, made = _ship(rt, again=True)
    assert made == [third]
    assert state.keys == [key, key, f"{_expected_key(rt, PRODUCT, 2)}:1:http"]
    assert len(state.acted) == 2
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TaskRow)) == 2
    assert task_story(rt, third).task.state == "published"
