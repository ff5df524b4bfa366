"""Drive Shipyard's REST API from outside: submit a task, approve it, read its lineage.

    python examples/api_client.py --url http://127.0.0.1:8001 \\
        --submit-token "$T1" --approve-token "$T2" [--job landing-page --input sku=SKU-123 ...]

It needs a running ``shipyard serve`` (the API at ``/api/v1`` on its admin port, 8001 by
default, an origin apart from the storefront's; ``admin_url`` in ``.shipyard/gateway.json``)
and ``shipyard worker`` on the project, and two tokens from ``shipyard tokens create``: one
with the role ``operator`` to submit, one with ``approver`` to approve, for two different
people (the policies let nobody approve their own submission). The tokens may also come
from ``SHIPYARD_SUBMIT_TOKEN`` and ``SHIPYARD_APPROVE_TOKEN``. Only httpx is needed
(``pip install httpx``).

The script submits one task, waits until it waits for approval, approves it, waits until it
is published and prints a summary of its lineage: the task, its state, the artifact, each
attempt's tier and model with its checks, the approvals and the release.

Exit status: 0 published (or done, for a job kind with no release target); 1 the API refused
a request (its problem details are printed) or could not be reached; 2 bad arguments, or the
inputs were refused at the door; 3 the task stopped short of publishing (it failed, was
rejected or denied, waits for a person's code or a budget, or did not settle in time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, NoReturn

import httpx

SAMPLE_PRODUCT = {
    "sku": "SKU-101",
    "name": "Trail Mug",
    "price": "18.50",
    "currency": "USD",
    "shipping_weight_kg": "0.4",
    "category": "Kitchen",
    "features": "Enamel|Holds 350 ml",
    "image": "/images/sku-101.jpg",
    "image_alt": "A blue enamel mug on a rock",
    "brand": "Northbound",
}
"""The inputs the example's product job kinds start from; ``--input`` overrides fields.
Values are strings, as in products.csv: the API coerces them to the schema's types."""

PRODUCT_KINDS = frozenset({"landing-page", "product-copy"})

SETTLED = frozenset(
    {
        "waiting_approval",
        "waiting_input",
        "paused",
        "invalid",
        "published",
        "done",
        "failed",
        "rejected",
        "denied",
        "rolled_back",
        "compensated",
        "error",
    }
)
"""States after which nothing happens without a person (the waiting ones and the final ones)."""

FINISHED = frozenset({"published", "done"})

WHY_STOPPED = {
    "waiting_input": "no tier could write it: a person supplies the code (`shipyard provide`)",
    "paused": "every tier that could write it would break a budget (`shipyard resume`)",
    "failed": "its checks still failed when its attempts ran out (`shipyard show`)",
    "rejected": "a person rejected it",
    "denied": "the policies refused it at the gate",
    "rolled_back": "it was published, then rolled back",
    "compensated": "a step after the release failed; earlier effects were undone",
    "error": "a stage crashed (infrastructure or a bug, not the generated code)",
}

EXIT_PROBLEM, EXIT_REFUSED, EXIT_STOPPED = 1, 2, 3


class ApiProblem(Exception):
    """A request the API refused, with its RFC 9457 problem details."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail", ""))
        self.status = status
        self.type = str(body.get("type", "about:blank"))
        self.title = str(body.get("title", ""))
        self.detail = str(body.get("detail", ""))
        self.hint = str(body.get("hint", ""))
        self.note = ""
        """What the refusal leaves behind, when it matters (a task still waiting)."""


class Stopped(Exception):
    """The task will not be published without someone's help (or did not settle in time)."""


class Api:
    """The REST API at ``url``/api/v1; each call names the token it is made with."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, token: str, body: Any = None) -> dict[str, Any]:
        """The JSON reply; raises ApiProblem on an error (after waiting out a rate limit)."""
        headers = {"Authorization": f"Bearer {token}"}
        response = self.http.request(method, path, json=body, headers=headers)
        for _ in range(2):  # over this token's requests per minute: wait as long as it says
            if response.status_code != 429:
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
            response = self.http.request(method, path, json=body, headers=headers)
        if response.is_error:
            raise ApiProblem(response.status_code, _problem_body(response))
        reply: dict[str, Any] = response.json()
        return reply


def _problem_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": response.reason_phrase, "detail": response.text[:500]}


def say(message: str) -> None:
    """Progress, on stderr; the summary alone goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def wait_for(
    api: Api, token: str, task_id: str, states: frozenset[str], *, timeout: float
) -> dict[str, Any]:
    """Poll the task until its state is one of ``states``; its story (GET /tasks/ID)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        story = api.call("GET", f"/tasks/{task_id}", token)
        state = str(story["task"]["state"])
        if state != last:
            say(f"  {task_id}: {state}")
            last = state
        if state in states:
            return story
        if time.monotonic() > deadline:
            raise Stopped(f"task {task_id} is still {state} after {timeout:g} s")
        time.sleep(0.5)


def stopped_because(story: dict[str, Any]) -> str:
    task = story["task"]
    why = WHY_STOPPED.get(task["state"], "")
    error = f" ({task['error']})" if task.get("error") else ""
    return f"task {task['id']} is {task['state']}: {why}{error}"


def _check(result: dict[str, Any]) -> str:
    if result["passed"]:
        return f"{result['check']} passed"
    return f"{result['check']} failed ({result['findings']} findings)"


def summary(task_id: str, lineage: dict[str, Any]) -> list[str]:
    """A few lines from the artifact's lineage about the task that made it."""
    artifact = lineage["artifact"]
    tasks = lineage["tasks"]
    task = next((t for t in tasks if t["task"] == task_id), tasks[0] if tasks else {})
    lines = [
        f"task       {task_id}  {task.get('job_kind', '')} {task.get('input_key', '')}"
        f" (submitted by {task.get('submitted_by', '?')})",
        f"state      {task.get('state', '?')}",
        f"artifact   {artifact['id']}  ({', '.join(sorted(artifact['files']))}; "
        f"{artifact['size']} bytes)",
    ]
    for attempt in task.get("attempts", []):
        checks = ", ".join(_check(c) for c in attempt["checks"])
        outcome = "passed" if attempt["passed"] else "failed"
        lines.append(
            f"attempt {attempt['number']}  tier {attempt['tier']}, model {attempt['model']}"
            f" ({outcome}); checks: {checks or 'none'}"
        )
    decisions = [d for d in task.get("decisions", []) if d["decision"] in ("approved", "rejected")]
    for d in decisions:
        reason = f": {d['reason']}" if d["reason"] else ""
        lines.append(f"approval   {d['decision']} by {d['actor']}{reason}")
    if not decisions:
        lines.append("approval   none needed")
    for r in task.get("releases", []):
        lines.append(f"release    {r['target']} {r['path']} version {r['version']}, {r['state']}")
    if not task.get("releases"):
        lines.append("release    none")
    return lines


def run(api: Api, args: argparse.Namespace) -> int:
    """Submit, approve, wait for the release, print the summary; the exit status."""
    submitted = api.call(
        "POST", "/tasks", args.submit_token, {"job_kind": args.job, "inputs": args.inputs}
    )
    for refused in submitted["rejected"]:
        say(f"refused at the door: {refused['message']}")
    if not submitted["submitted"]:
        return EXIT_REFUSED
    [task_id] = submitted["submitted"]
    say(f"submitted {task_id} ({args.job})")

    story = wait_for(api, args.submit_token, task_id, SETTLED, timeout=args.timeout)
    state = story["task"]["state"]
    if state == "waiting_approval":
        try:
            decided = api.call(
                "POST", f"/tasks/{task_id}/approve", args.approve_token, {"reason": args.reason}
            )
        except ApiProblem as problem:
            problem.note = f"task {task_id} still waits for approval"
            raise
        if decided["state"] == "waiting_approval":
            raise Stopped(
                f"task {task_id}: approval recorded; its risk needs another approver's too"
            )
        story = wait_for(
            api, args.submit_token, task_id, SETTLED - {"waiting_approval"}, timeout=args.timeout
        )
    elif state in FINISHED:
        say(f"  {task_id}: the policies needed no approval")
    if story["task"]["state"] not in FINISHED:
        raise Stopped(stopped_because(story))

    artifact = story["task"]["artifact"]
    lineage = api.call("GET", f"/artifacts/{artifact}/lineage", args.submit_token)
    print("\n".join(summary(task_id, lineage)))
    return 0


def parse_inputs(job: str, pairs: list[str]) -> dict[str, Any]:
    """The sample product for the product job kinds, with each KEY=VALUE over it."""
    inputs: dict[str, Any] = dict(SAMPLE_PRODUCT) if job in PRODUCT_KINDS else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--input {pair!r} is not KEY=VALUE")
        inputs[key.strip()] = value
    return inputs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Submit a task through Shipyard's REST API, approve it, show its lineage.",
        epilog="Exit status: 0 published, 1 API problem, 2 bad arguments or inputs, "
        "3 the task stopped short of publishing.",
    )
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8001",
        help="where shipyard serve answers for the API: its admin port (8001)",
    )
    parser.add_argument(
        "--submit-token",
        default=os.environ.get("SHIPYARD_SUBMIT_TOKEN", ""),
        help="an operator's token (default: $SHIPYARD_SUBMIT_TOKEN)",
    )
    parser.add_argument(
        "--approve-token",
        default=os.environ.get("SHIPYARD_APPROVE_TOKEN", ""),
        help="another person's approver token (default: $SHIPYARD_APPROVE_TOKEN)",
    )
    parser.add_argument("--job", default="landing-page", help="the job kind (landing-page)")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input; for landing-page and product-copy it overrides the sample product",
    )
    parser.add_argument("--reason", default="approved through the API", help="why it is approved")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for each state (300)"
    )
    args = parser.parse_args(argv)
    if not args.submit_token or not args.approve_token:
        parser.error(
            "both tokens are needed: --submit-token and --approve-token "
            "(or SHIPYARD_SUBMIT_TOKEN and SHIPYARD_APPROVE_TOKEN)"
        )
    try:
        args.inputs = parse_inputs(args.job, args.input)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def fail(lines: list[str], status: int) -> NoReturn:
    for line in lines:
        print(line, file=sys.stderr)
    sys.exit(status)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    api = Api(args.url)
    try:
        return run(api, args)
    except ApiProblem as problem:
        lines = [f"error: {problem.status} {problem.title}", f"  type:   {problem.type}"]
        if problem.detail:
            lines.append(f"  detail: {problem.detail}")
        if problem.hint:
            lines.append(f"  hint:   {problem.hint}")
        if problem.note:
            lines.append(f"  note:   {problem.note}")
        fail(lines, EXIT_PROBLEM)
    except httpx.TransportError as exc:
        fail([f"error: cannot reach {args.url}: {exc}"], EXIT_PROBLEM)
    except Stopped as exc:
        fail([f"stopped: {exc}"], EXIT_STOPPED)
    finally:
        api.close()


if __name__ == "__main__":
    sys.exit(main())
