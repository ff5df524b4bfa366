"""The gateway: every served target behind one HTTP endpoint, with canary routing.

``shipyard serve`` runs it. A static-site target answers at ``/``; each http-handler target
answers under its mount (``/api/...``), its versions running in processes of their own. When
a release is baking, its route sends a share of the path's visitors to the candidate: the
visitor's arm is a hash of the release and the visitor's id (the ``X-Shipyard-Client``
header, else a ``shipyard_visitor`` cookie the gateway sets), so a visitor stays on one
version while the weight rises. Every response says which version served it
(``X-Shipyard-Version``).

For each baking release the gateway tallies both arms (requests, 5xx, latency samples) and
writes them to the database about once a second, where the canary controller reads them.
On a path with no candidate, the live version's traffic is tallied the same way (the
``live`` arm) for the targets whose monitor watches them. Synthetic probes pick their arm
with ``X-Shipyard-Arm``, allowed only with the gateway's probe token, and are not counted
as traffic.

The request path is plain ASGI, with no framework routing, since it sits in front of
every page view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from shipyard.release import LIVE_ARM, HttpHandler, RouteTable, StaticSite, bucket
from shipyard.sandbox import bwrap_available, confine
from shipyard.store import ReleaseSampleRow, transaction

__all__ = ["CLIENT_HEADER", "VISITOR_COOKIE", "Gateway", "Recorder", "write_gateway_file"]

CLIENT_HEADER = "x-shipyard-client"
VISITOR_COOKIE = "shipyard_visitor"
_PROBE_HEADER = b"x-shipyard-probe"
_ARM_HEADER = b"x-shipyard-arm"
_SAMPLE_CAP = 1000
_LIVE_SAMPLE_CAP = 200
"""Latencies kept per second of a live version: it is recorded for as long as it is live,
and the monitor judges it over minutes, not seconds."""
_log = logging.getLogger("shipyard.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Recorder:
    """Per-release, per-arm tallies, written to ``release_samples`` every ``interval``."""

    def __init__(self, sessions: sessionmaker[Session] | None, *, interval: float = 1.0) -> None:
        self.sessions, self.interval = sessions, interval
        self._tallies: dict[tuple[str, str], list[Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, key: str, arm: str, status: int, ms: float) -> None:
        cap = _LIVE_SAMPLE_CAP if arm == LIVE_ARM else _SAMPLE_CAP
        with self._lock:
            tally = self._tallies.setdefault((key, arm), [0, 0, []])
            tally[0] += 1
            tally[1] += status >= 500
            sample: list[float] = tally[2]
            if len(sample) < cap:
                sample.append(ms)
            else:  # reservoir: every request had the same chance to be kept
                slot = random.randrange(tally[0])
                if slot < cap:
                    sample[slot] = ms

    def flush(self) -> int:
        """Write what was tallied since the last flush; the number of rows written."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        if not tallies or self.sessions is None:
            return 0
        now = datetime.now(UTC)
        rows = [
            ReleaseSampleRow(
                task_id=key,
                arm=arm,
                at=now,
                requests=n,
                errors=e,
                latencies=[round(x, 3) for x in s],
            )
            for (key, arm), (n, e, s) in tallies.items()
        ]
        try:
            with transaction(self.sessions) as session:
                session.add_all(rows)
        except Exception:  # the database is away: keep serving, and say so
            _log.exception("gateway: could not record %d traffic samples", len(rows))
            return 0
        return len(rows)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gateway-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


class HandlerPool:
    """One process per routed version of an http-handler target, started on first need."""

    def __init__(self, target: HttpHandler, *, isolate: bool) -> None:
        self.target, self.isolate = target, isolate
        self._run_dir = Path(tempfile.mkdtemp(prefix="shipyard-gw-"))  # short: socket paths
        self._procs: dict[str, tuple[subprocess.Popen[bytes], httpx.AsyncClient]] = {}
        self._starting: dict[str, asyncio.Lock] = {}

    async def client(self, key: str) -> httpx.AsyncClient:
        running = self._procs.get(key)
        if running is not None and running[0].poll() is None:
            return running[1]
        lock = self._starting.setdefault(key, asyncio.Lock())
        async with lock:
            running = self._procs.get(key)
            if running is not None and running[0].poll() is None:
                return running[1]
            if running is not None:
                await running[1].aclose()
            self._procs[key] = await asyncio.to_thread(self._start, key)
            return self._procs[key][1]

    def _start(self, key: str) -> tuple[subprocess.Popen[bytes], httpx.AsyncClient]:
        folder = self.target.version_dir(key)
        socket_path = self._run_dir / f"{key[-16:]}.sock"
        socket_path.unlink(missing_ok=True)
        log_path = self._run_dir / f"{key[-16:]}.log"
        command = [sys.executable, "-m", "shipyard.release._host", str(folder), str(socket_path)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        if self.isolate:
            command = confine(command, read_only=[folder], writable=[self._run_dir])
        else:  # at least none of the gateway's environment (keys, database URL) goes along
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=env,
                cwd=folder,
            )
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(
                    f"handler {key} on {self.target.name} did not start: "
                    + (" | ".join(tail) or f"exit status {proc.poll()}")
                )
            time.sleep(0.02)
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        return proc, httpx.AsyncClient(transport=transport, base_url="http://handler", timeout=30)

    async def reconcile(self, wanted: set[str]) -> None:
        """Stop the processes of versions no route refers to any more."""
        for key in [k for k in self._procs if k not in wanted]:
            proc, client = self._procs.pop(key)
            # SIGTERM lets uvicorn finish the requests in flight; off the event loop, so
            # the other routes keep answering meanwhile.
            await asyncio.to_thread(_stop, proc)
            await client.aclose()

    async def close(self) -> None:
        await self.reconcile(set())
        shutil.rmtree(self._run_dir, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


_NOT_FORWARDED = {
    b"host", b"connection", b"content-length", b"transfer-encoding", b"keep-alive", b"upgrade",
    _PROBE_HEADER, _ARM_HEADER, b"x-shipyard-synthetic",
}  # fmt: skip


def _forwarded(scope: Scope, probe: bool) -> list[tuple[bytes, bytes]]:
    """The request's headers for a handler: never the probe token; ``x-shipyard-synthetic``
    marks a probe, so a handler can leave it out of its own business figures."""
    headers = [(k, v) for k, v in scope["headers"] if k not in _NOT_FORWARDED]
    return [*headers, (b"x-shipyard-synthetic", b"1")] if probe else headers


def _cookie(scope: Scope, name: str) -> str:
    for part in _header(scope, b"cookie").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]],
    *,
    head: bool = False,
) -> None:
    """Send a whole response (a HEAD gets the headers GET would, and no body)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class Gateway:
    """The ASGI application ``shipyard serve`` runs (see the module's docstring)."""

    def __init__(
        self,
        *,
        site: StaticSite | None = None,
        handlers: Sequence[HttpHandler] = (),
        sessions: sessionmaker[Session] | None = None,
        metrics: CollectorRegistry | None = None,
        probe_token: str = "",
        isolate: bool | None = None,
        announce_file: Path | None = None,
        watched: Collection[str] = (),
    ) -> None:
        self.site, self.metrics = site, metrics
        self.watched = frozenset(watched)
        """Targets whose live versions' traffic is recorded (their monitors read it)."""
        self._owners: tuple[str, dict[str, str]] = ("", {})
        self.probe_token = probe_token or secrets.token_urlsafe(24)
        self.recorder = Recorder(sessions)
        self._site_routes = RouteTable(site.root) if site else None
        isolate = bwrap_available() if isolate is None else isolate
        self._handlers = [
            (h, RouteTable(h.root), HandlerPool(h, isolate=isolate))
            for h in sorted(handlers, key=lambda h: -len(h.mount))
        ]
        self._reconciler: asyncio.Task[None] | None = None
        self.isolated = isolate
        self.announce_file = announce_file
        """gateway.json, removed at shutdown (a rollout then waits for a gateway)."""

    @property
    def handlers(self) -> list[HttpHandler]:
        return [handler for handler, _, _ in self._handlers]

    # -- lifespan -------------------------------------------------------------------------

    async def startup(self) -> None:
        self.recorder.start()
        if self._handlers:
            self._reconciler = asyncio.create_task(self._reconcile_forever())

    async def shutdown(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        if self.announce_file is not None:
            self.announce_file.unlink(missing_ok=True)
        for _, _, pool in self._handlers:
            await pool.close()
        await asyncio.to_thread(self.recorder.stop)

    async def _reconcile_forever(self) -> None:
        while True:
            for _, table, pool in self._handlers:
                wanted = {
                    str(k)
                    for _, route in table.routes()
                    for k in (route.get("live"), route.get("candidate"))
                    if k
                }
                await pool.reconcile(wanted)
                for key in wanted:  # warm: a candidate answers its first visitor at speed
                    with contextlib.suppress(RuntimeError):
                        await pool.client(key)
            await asyncio.sleep(0.5)

    # -- requests -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/healthz":
            body = json.dumps(
                {
                    "status": "ok",
                    "site": self.site.name if self.site else None,
                    "version": self.site.live_version() if self.site else None,
                    "handlers": [h.name for h, _, _ in self._handlers],
                }
            ).encode()
            await _respond(send, 200, body, "application/json", [])
            return
        if path == "/metrics" and self.metrics is not None:
            data = await asyncio.to_thread(generate_latest, self.metrics)
            await _respond(send, 200, data, CONTENT_TYPE_LATEST, [])
            return
        for handler, table, pool in self._handlers:
            if path.startswith(handler.mount + "/"):
                await self._handle(scope, receive, send, handler, table, pool)
                return
        await self._static(scope, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _live(self, site: StaticSite) -> Path | None:
        """The live version's folder: ``current`` read as a link (a switch is one rename)."""
        try:
            return site.root / os.readlink(site.root / "current")
        except FileNotFoundError:
            return None

    def _arm(
        self, scope: Scope, key: str, weight: float, headers: list[tuple[bytes, bytes]]
    ) -> tuple[str, bool]:
        """(arm, is_probe) for this request to a route with a candidate."""
        forced = _header(scope, _ARM_HEADER)
        offered = _header(scope, _PROBE_HEADER).encode("latin-1")
        if forced and secrets.compare_digest(offered, self.probe_token.encode()):
            return ("candidate" if forced == "candidate" else "baseline"), True
        visitor = _header(scope, CLIENT_HEADER.encode()) or _cookie(scope, VISITOR_COOKIE)
        if not visitor:
            visitor = secrets.token_hex(8)
            headers.append(
                (
                    b"set-cookie",
                    f"{VISITOR_COOKIE}={visitor}; Path=/; Max-Age=2592000; HttpOnly; "
                    "SameSite=Lax".encode(),
                )
            )
        return ("candidate" if bucket(key, visitor) < weight else "baseline"), False

    def _probing(self, scope: Scope) -> bool:
        """A probe (the gateway's token with an arm) on a path with no candidate."""
        offered = _header(scope, _PROBE_HEADER).encode("latin-1")
        return bool(_header(scope, _ARM_HEADER)) and secrets.compare_digest(
            offered, self.probe_token.encode()
        )

    def _owner(self, site: StaticSite, version: str, relative: str) -> str:
        """The release whose folder in the site's ``version`` holds ``relative`` (read once
        per version: a version never changes)."""
        if self._owners[0] != version:
            try:
                releases = site.manifest(version).get("releases", {})
            except (OSError, ValueError):
                return ""
            owners = {str(r["path"]): str(k) for k, r in releases.items()}
            self._owners = (version, owners)
        owners = self._owners[1]
        parts = [p for p in relative.split("/") if p]
        for end in range(len(parts), 0, -1):
            found = owners.get("/".join(parts[:end]))
            if found:
                return found
        return owners.get(".", "")

    async def _static(self, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-cache")]
        site = self.site
        if site is None or self._site_routes is None:
            await _respond(send, 404, b"nothing is served here\n", "text/plain", headers)
            return
        matched = self._site_routes.match(path)
        key, arm, probe = "", "baseline", self._probing(scope)
        if matched is not None:
            prefix, route = matched
            key = str(route["candidate"])
            arm, probe = self._arm(scope, key, float(route["weight"]), headers)
        base: Path | None = None
        if arm == "candidate" and matched is not None:
            prefix, route = matched
            base, relative = site.root / route["dir"], path[len(prefix) :].lstrip("/")
            version = f"candidate {key}"
            if not base.is_dir() or (route["path"] == "." and not (base / relative).exists()):
                # Aborted a moment ago; or a release at the root, which adds to the site
                # rather than replacing it (as its promotion will): the live version serves.
                base = None
        if base is None:
            base, relative = self._live(site), path.lstrip("/")
            version = base.name if base is not None else "none"
        headers.append((b"x-shipyard-version", version.encode()))
        status, body, content_type = 404, f"{path} is not published\n".encode(), "text/plain"
        parts = relative.split("/")
        # Published files are plain files written by Shipyard (no links), so a path without
        # '..' stays inside its version: no resolve() on the hot path.
        if base is not None and not any(p == ".." or p.startswith(".shipyard") for p in parts):
            found = base / relative
            if found.is_dir():
                if not path.endswith("/"):  # relative links in the page need the slash
                    query = scope["query_string"].decode("latin-1")
                    # One leading slash: "//products/x/" would name another host.
                    local = "/" + path.lstrip("/\\")
                    location = f"{quote(local, safe='/')}/" + (f"?{query}" if query else "")
                    headers.append((b"location", location.encode()))
                    status, body = 308, b""
                found = found / "index.html"
            if status != 308 and found.is_file():
                status, body = 200, found.read_bytes()
                content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
                if content_type.startswith("text/"):
                    content_type += "; charset=utf-8"
        await _respond(send, status, body, content_type, headers, head=scope["method"] == "HEAD")
        # A page the live site does not have yet has no baseline to compare with.
        ms = (time.perf_counter() - started) * 1000
        if key and not probe and (arm == "candidate" or status != 404):
            self.recorder.add(key, arm, status, ms)
        elif not key and not probe and status != 404 and base is not None:
            self._record_live_page(site, base.name, relative, status, ms)

    def _record_live_page(
        self, site: StaticSite, version: str, relative: str, status: int, ms: float
    ) -> None:
        """A live page's request, for its release's monitor (when one watches the site)."""
        owner = self._owner(site, version, relative) if site.name in self.watched else ""
        if owner:
            self.recorder.add(owner, LIVE_ARM, status, ms)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        target: HttpHandler,
        table: RouteTable,
        pool: HandlerPool,
    ) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = []
        matched = table.match(path)
        if matched is None:
            body = json.dumps({"error": f"no handler is released at {path}"}).encode()
            await _respond(send, 404, body, "application/json", headers)
            return
        prefix, route = matched
        candidate = str(route.get("candidate") or "")
        arm, probe = "baseline", self._probing(scope)
        if candidate:
            arm, probe = self._arm(scope, candidate, float(route["weight"]), headers)
        key = candidate if arm == "candidate" else str(route.get("live") or "")
        payload = await _read_body(receive)
        if not key:
            status = 404
            data = json.dumps({"error": f"no version of {prefix} is live yet"}).encode()
            content_type = "application/json"
        else:
            headers.append((b"x-shipyard-version", key.encode()))
            try:
                client = await pool.client(key)
                reply = await client.request(
                    scope["method"],
                    "/" + quote(path[len(prefix) :], safe="/"),  # %3F stays in the path
                    params=scope["query_string"].decode(),
                    content=payload,
                    headers=_forwarded(scope, probe),
                )
                status, data = reply.status_code, reply.content
                content_type = reply.headers.get("content-type", "application/json")
            except (httpx.HTTPError, RuntimeError) as exc:
                status, content_type = 502, "application/json"
                data = json.dumps({"error": f"handler {key} did not answer: {exc}"}).encode()
        await _respond(send, status, data, content_type, headers)
        if candidate and not probe and (arm == "candidate" or route.get("live")):
            self.recorder.add(candidate, arm, status, (time.perf_counter() - started) * 1000)
        elif not candidate and not probe and key and target.name in self.watched:
            self.recorder.add(key, LIVE_ARM, status, (time.perf_counter() - started) * 1000)


def write_gateway_file(
    path: Path, *, url: str, token: str, targets: Sequence[str], admin_url: str = ""
) -> None:
    """Tell the canary controller (another process) where the gateway is, what it serves and
    its probe token (readable by the owner only); and scripts where the API and console are
    (``admin_url``: their own origin)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        announced = {"url": url, "token": token, "pid": os.getpid(), "targets": list(targets)}
        json.dump({**announced, "admin_url": admin_url}, handle)
    os.replace(temp, path)
