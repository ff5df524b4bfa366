"""The gateway in a process of its own, a pricing handler project and a bounded load loop:
canary rollouts on loopback, for the tests and ``benchmarks/canary_verdicts.py``."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shipyard.config import Project, load_project

HANDLER_PROJECT = """
[project]
name = "pricing"

[domains.pricing]
jobs = ["jobs/price-rule"]
concurrency = 4
worker_concurrency = 4

[targets.api]
kind = "http-handler"
mount = "/api"

[targets.api.rollout]
{rollout}
{monitor}"""

ROLLOUT = {
    "stages": [20, 50, 100],
    "bake_seconds": 1.5,
    "interval_seconds": 0.25,
    "min_requests": 60,
    "max_p95_ratio": 1.5,
    "max_error_rate_increase": 0.02,
}
"""The test project's rollout plan; ``handler_project`` takes changes to it."""

PRICE_RULE_JOB = """
name = "price-rule"
description = "A pricing handler: the price of a SKU, with injectable faults for tests"
risk = "low"
input_key = "rule"
max_attempts = 1
outputs = { "handler.py" = "handler.py.j2" }
checks = [{ name = "ruff" }]

[release]
target = "api"
path = "price"

[[release.probes]]
path = "sku-1"
contains = "price"
"""

HANDLER_TEMPLATE = '''"""Price of a SKU (rule {{ rule }})."""

import pathlib
import random
import time

PROBE_STATUS = {{ probe_status | default(200) }}
FAULT = pathlib.Path(__file__).with_name("fault")
"""A file a test writes beside a live version: the share of visitors' requests that fail
from then on (the version's behaviour switched after its release)."""


def fail_rate():
    try:
        return float(FAULT.read_text())
    except (OSError, ValueError):
        return {{ fail_rate }}


def handle(request):
    time.sleep({{ delay_ms }} / 1000)
    if "x-shipyard-synthetic" in request["headers"]:
        if PROBE_STATUS != 200:
            return PROBE_STATUS, {"error": "injected probe failure"}
    elif random.random() < fail_rate():
        raise RuntimeError("injected failure")
    return {"sku": request["path"].strip("/"), "price": {{ price }}, "rule": "{{ rule }}"}
'''

SCHEMA = """{
  "type": "object",
  "required": ["rule", "price", "delay_ms", "fail_rate"],
  "properties": {
    "rule": {"type": "string"},
    "price": {"type": "number"},
    "delay_ms": {"type": "number"},
    "fail_rate": {"type": "number"},
    "probe_status": {"type": "integer"}
  }
}"""


def handler_project(
    root: Path, *, bake: float = 1.5, monitor: dict[str, Any] | None = None, **rollout: Any
) -> Path:
    """A project with one http-handler target (with a rollout: ``ROLLOUT`` with ``bake`` and
    the ``rollout`` given, and a ``[targets.api.monitor]`` table when ``monitor`` is given)
    and a ``price-rule`` job kind whose handler sleeps ``delay_ms``, fails ``fail_rate`` of
    its visitors' requests (or what a ``fault`` file beside it says) and answers probes
    ``probe_status``."""
    plan = {**ROLLOUT, "bake_seconds": bake, **rollout}
    toml = "\n".join(f"{key} = {json.dumps(value)}" for key, value in plan.items())
    watch = ""
    if monitor is not None:
        watch = "\n[targets.api.monitor]\n" + "\n".join(
            f"{key} = {json.dumps(value)}" for key, value in monitor.items()
        )
    job = root / "jobs" / "price-rule"
    job.mkdir(parents=True)
    (root / "shipyard.toml").write_text(HANDLER_PROJECT.format(rollout=toml, monitor=watch))
    (job / "job.toml").write_text(PRICE_RULE_JOB)
    (job / "handler.py.j2").write_text(HANDLER_TEMPLATE)
    (job / "input.schema.json").write_text(SCHEMA)
    (job / "prompt.md.j2").write_text("Write a pricing handler for rule {{ inputs.rule }}.\n")
    return root


@contextmanager
def gateway(project: Project, *, timeout: float = 60) -> Iterator[str]:
    """``shipyard serve``'s gateway for the project's targets, in a process of its own as
    ``shipyard serve`` runs it (so its timing never shares an interpreter with the worker or
    the load); yields its URL once it has announced itself in ``gateway.json``."""
    announced = project.state_dir / "gateway.json"
    context = multiprocessing.get_context("spawn")
    proc = context.Process(
        target=_serve, args=(str(project.root), project.database_url), daemon=True
    )
    proc.start()
    try:
        deadline = time.monotonic() + timeout
        while (info := _announced(announced)).get("pid") != proc.pid:
            if not proc.is_alive() or time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not start (exit code {proc.exitcode})")
            time.sleep(0.05)
        yield str(info["url"])
    finally:
        proc.terminate()  # SIGTERM: uvicorn shuts down, the recorder flushes
        proc.join(timeout=20)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=10)
        announced.unlink(missing_ok=True)


def _serve(root: str, database_url: str) -> None:
    """The gateway process: serve every target of the project at ``root`` until SIGTERM."""
    import uvicorn

    from shipyard.release import HttpHandler, StaticSite
    from shipyard.server import Gateway, write_gateway_file
    from shipyard.store import make_engine, session_factory

    os.environ["SHIPYARD_DATABASE_URL"] = database_url
    project = load_project(Path(root))
    sites, handlers = [], []
    for name, settings in project.settings.targets.items():
        folder = project.sites_dir / name
        if settings.kind == "static-site":
            sites.append(StaticSite(name, folder))
        elif settings.kind == "http-handler":
            handlers.append(HttpHandler(name, folder, mount=settings.mount))
    token = secrets.token_urlsafe(16)
    announced = project.state_dir / "gateway.json"
    app = Gateway(
        site=sites[0] if sites else None,
        handlers=handlers,
        sessions=session_factory(make_engine(project.database_url)),
        probe_token=token,
        announce_file=announced,
        watched=[n for n, t in project.settings.targets.items() if t.watching() is not None],
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    served = [s.name for s in sites[:1]] + [h.name for h in handlers]
    write_gateway_file(announced, url=url, token=token, targets=served)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])


def _announced(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@dataclass(frozen=True)
class Hit:
    started: float
    """time.time() when the request was sent."""
    status: int
    version: str
    visitor: str


@dataclass
class Load:
    """Visitors requesting ``paths`` on the gateway from a few threads, bounded in count and
    time; each visitor keeps one id (so the gateway can keep them on one version)."""

    url: str
    paths: Sequence[str]
    threads: int = 3
    pause: float = 0.004
    max_requests: int = 40_000
    max_seconds: float = 120.0
    hits: list[Hit] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._deadline = time.monotonic() + self.max_seconds
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        visitors = [f"visitor-{n}-{i}" for i in range(100)]
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                if len(self.hits) >= self.max_requests:
                    return
                visitor = rng.choice(visitors)
                started = time.time()
                try:
                    reply = client.get(
                        rng.choice(self.paths), headers={"X-Shipyard-Client": visitor}
                    )
                    hit = Hit(
                        started,
                        reply.status_code,
                        reply.headers.get("x-shipyard-version", ""),
                        visitor,
                    )
                except httpx.HTTPError:
                    hit = Hit(started, 0, "", visitor)
                self.hits.append(hit)
                time.sleep(self.pause)
