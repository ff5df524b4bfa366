"""The faces agree: a task taken through the gate to published shows the same spans and the
same state at the command line (``shipyard trace --otlp-json``, ``shipyard show --json``, run
as a separate process), in the REST API and on the console's task page.

They all call the same service functions (``task_trace``, ``task_story``); this is the test
that they render what those return, and nothing else (the CLI once hid duplicate spans that
the API showed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from server.test_console import serving, sign_in
from shipyard.config import Project
from shipyard.server import create_token
from shipyard.service import Runtime
from support import PRODUCT, SETTLED, run_cli, wait_for_state, wait_until_finished


def _cli(project: Project, *args: str) -> Any:
    done = run_cli(project.root, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout)


def _published(rt: Runtime, url: str) -> str:
    """A task of the example submitted by alice and approved by bob over the API, finished."""
    operator = {"Authorization": f"Bearer {create_token(rt, 'alice', 'operator', actor='ops')[1]}"}
    approver = {"Authorization": f"Bearer {create_token(rt, 'bob', 'approver', actor='ops')[1]}"}
    with httpx.Client(base_url=url + "/api/v1", timeout=30) as api:
        submitted = api.post(
            "/tasks", headers=operator, json={"job_kind": "landing-page", "inputs": PRODUCT}
        )
        assert submitted.status_code == 201, submitted.text
        [task_id] = submitted.json()["submitted"]
        assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
        approved = api.post(f"/tasks/{task_id}/approve", headers=approver, json={})
        assert approved.status_code == 200, approved.text
    assert wait_until_finished(rt, task_id) == "published"
    rt.tracing.flush()  # the worker's last spans, out of its exporter's batch
    return str(task_id)


def test_cli_api_and_console_show_the_same_spans_and_state(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    with serving(rt) as url:
        task_id = _published(rt, url)
        viewer = create_token(rt, "carol", "viewer", actor="ops")[1]
        with httpx.Client(base_url=url + "/api/v1", timeout=30) as api:
            auth = {"Authorization": f"Bearer {viewer}"}
            story = api.get(f"/tasks/{task_id}", headers=auth).json()
            trace = api.get(f"/tasks/{task_id}/trace", headers=auth).json()
        console = sign_in(url, viewer)
        page = console.get(f"/console/tasks/{task_id}")
        console.close()
        assert page.status_code == 200, page.text
        otlp = _cli(project, "trace", task_id, "--otlp-json")
        shown = _cli(project, "show", task_id, "--json")

    api_spans = [(s["trace_id"], s["span_id"]) for s in trace["spans"]]
    [scope] = [scope for r in otlp["resourceSpans"] for scope in r["scopeSpans"]]
    cli_spans = [(s["traceId"], s["spanId"]) for s in scope["spans"]]
    console_spans = re.findall(r'data-span="([0-9a-f]+)"', page.text)
    names = {s["name"] for s in trace["spans"]}
    assert {"validate", "gate"} <= names, names  # the stages' spans, not an empty trace
    assert len({span for _, span in api_spans}) == len(api_spans), "a span shown twice"
    assert cli_spans == api_spans
    assert console_spans == [span for _, span in api_spans]

    state = re.search(r'id="state">([a-z_]+)<', page.text)
    assert state, "the task page shows no state"
    assert story["task"]["state"] == shown["task"]["state"] == state.group(1) == "published"
    assert story["task"]["id"] == shown["task"]["id"] == trace["task_id"] == task_id
