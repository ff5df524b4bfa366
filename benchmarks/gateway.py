"""Benchmark the gateway's cost per page view and its canary switch-back time, one run.

Three servers, each in a process of its own (the load generator never shares a GIL with a
server), one uvicorn worker each with the same settings (``http="h11"``, ``loop="asyncio"``,
``log_level="warning"``, lifespan on), serve the same ~6 KB product page on loopback:

- direct: a minimal ASGI app that reads the page's file for the path and returns it;
- gateway: ``shipyard.server.Gateway`` over a ``StaticSite`` with the page published, and no
  candidate on the path;
- gateway, canary 50%: the same, with a candidate deployed on the path and shifted to 50, so
  the visitors split and the gateway records both arms to a SQLite database.

For each scenario: throughput with 8 keep-alive connections (raw asyncio sockets, so the client
costs little next to the server) and latency one request at a time on one keep-alive
connection, after a warm-up, every request naming one of 200 visitors in ``X-Shipyard-Client``.
The scenarios run in rounds, their order rotated every round; the table has the median round.
"added p50" is the median over rounds of (scenario p50 - direct p50) measured in that round.
The last column is the app's own time per request, called in-process without a server (what
the gateway's code costs, apart from uvicorn and the network).

Target: the gateway adds at most 1 ms to p50 latency at concurrency 1.

Every server listens on a socket made by ``shipyard serve``'s own ``_listen`` (IPPROTO_TCP,
so asyncio turns Nagle's algorithm off; with it on, each keep-alive response waited ~40 ms
for a delayed ACK).

Then the switch-back time: a candidate at weight 50 on another path, a steady background load on
that path (another process), and ``StaticSite.abort(KEY)``: how long ``abort`` takes, and the
time from the call until the first response from the live version for a visitor who was on the
candidate (that visitor's requests polled back to back). This is the switch alone; the full
time to recover (detection by the canary controller to traffic on the baseline) is recorded by
the rollout itself.

    .venv/bin/python benchmarks/gateway.py [--requests N] [--sequential N] [--rounds R]
                                           [--mttr-trials T] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import multiprocessing as mp
import os
import pstats
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _harness import fixture, load_average, machine_line, percentile
from sqlalchemy import func, select

from shipyard.release import StaticSite
from shipyard.server import Gateway
from shipyard.store import ReleaseSampleRow, make_engine, migrate, session_factory

PAGE = "products/trail-mug"
MTTR_PAGE = "products/field-flask"
CANDIDATE = "page-v2"
VISITORS = [f"visitor-{n:03d}" for n in range(200)]
CONCURRENCY = 8
WARMUP = 300
TARGET_MS = 1.0
UVICORN = {"log_level": "warning", "http": "h11", "loop": "asyncio", "lifespan": "on"}


PAGE_TEMPLATE = "product_page.html"
"""In ``benchmarks/fixtures/gateway/``: a product page with ``{{ name }}``, ``{{ colour }}``
and ``{{ price }}`` to fill in."""


def product_page(name: str, colour: str, price: str) -> bytes:
    """A realistic product page of about 6 KB: styles, JSON-LD, navigation, copy, specs."""
    text = fixture("gateway", PAGE_TEMPLATE)
    for field_name, value in (("name", name), ("colour", colour), ("price", price)):
        text = text.replace("{{ " + field_name + " }}", value)
    if "{{ " in text:
        raise ValueError(f"{PAGE_TEMPLATE}: a field other than name, colour and price")
    return text.encode()


# -- servers, one process each --------------------------------------------------------------


class DirectApp:
    """The baseline: read the file the path names and return it; no routing, no recording."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                await send({"type": kind + ".complete"})
                if kind == "lifespan.shutdown":
                    return
        body = (self.root / scope["path"].lstrip("/") / "index.html").read_bytes()
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def make_app(kind: str, root: Path, db_url: str | None) -> Any:
    if kind == "direct":
        return DirectApp(root / "current")
    sessions = session_factory(make_engine(db_url)) if db_url else None
    return Gateway(site=StaticSite("shop", root), sessions=sessions, isolate=False)


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Start children with SIGINT blocked (the mask survives the spawn), so a Ctrl-C while
    one is still importing does not reach it; the parent stops them in order."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def detach() -> None:
    """In a child: leave the terminal's process group, drop any pending Ctrl-C, unblock."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _exit_with_parent(conn: Connection) -> None:
    """The parent holds the other end of the pipe: if it dies, so does this process."""
    with contextlib.suppress(EOFError, OSError):
        conn.recv()
    os._exit(1)


def serve(kind: str, root: str, db_url: str, conn: Connection) -> None:
    """Process entry: one uvicorn server on a free loopback port, told to the parent.

    The listening socket is the one ``shipyard serve`` makes (``_listen``).
    """
    import uvicorn

    detach()
    app = make_app(kind, Path(root), db_url)
    from shipyard.cli._serve import _listen

    sock = _listen("127.0.0.1", 0)
    conn.send(sock.getsockname()[1])
    threading.Thread(target=_exit_with_parent, args=(conn,), daemon=True).start()
    uvicorn.Server(uvicorn.Config(app, **UVICORN)).run(sockets=[sock])


@dataclass
class Server:
    name: str
    process: Any
    conn: Connection
    port: int = 0

    def stop(self) -> None:
        """SIGTERM: uvicorn shuts down gracefully, so the gateway flushes its tallies."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def start_server(ctx: Any, name: str, kind: str, root: Path, db_url: str, tally: Tally) -> Server:
    ours, theirs = ctx.Pipe()
    args = (kind, str(root), db_url, theirs)
    process = ctx.Process(target=serve, args=args, daemon=True)
    with sigint_blocked():
        process.start()
    theirs.close()
    server = Server(name, process, ours)
    if not ours.poll(60):
        server.stop()
        raise RuntimeError(f"the {name} server did not start")
    server.port = ours.recv()
    deadline = time.monotonic() + 30
    while True:
        try:
            with Conn(server.port) as conn:
                reply = conn.get(request(PAGE, VISITORS[0]))
                tally.add(reply)
                if reply.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline or not process.is_alive():
            server.stop()
            raise RuntimeError(f"the {name} server does not answer on port {server.port}")
        time.sleep(0.05)


# -- the load generator -----------------------------------------------------------------------


def request(page: str, visitor: str) -> bytes:
    return (
        f"GET /{page}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: shipyard-bench\r\n"
        f"Accept: text/html\r\nX-Shipyard-Client: {visitor}\r\n\r\n"
    ).encode()


@dataclass(frozen=True)
class Reply:
    status: int
    version: str
    length: int


def parse_head(head: bytes) -> tuple[int, int, str]:
    """(status, content-length, x-shipyard-version) from a response's header block."""
    lines = head.decode("latin-1").split("\r\n")
    status, length, version = int(lines[0].split(" ", 2)[1]), 0, ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.lower()
        if name == "content-length":
            length = int(value)
        elif name == "x-shipyard-version":
            version = value.strip()
    return status, length, version


class Conn:
    """One blocking keep-alive connection (for latency: nothing between send and receive)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def get(self, data: bytes) -> Reply:
        self.sock.sendall(data)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._more()
        status, length, version = parse_head(self.buffer[:end])
        while len(self.buffer) < end + 4 + length:
            self._more()
        self.buffer = self.buffer[end + 4 + length :]
        return Reply(status, version, length)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> Reply:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status, length, version = parse_head(head)
    await reader.readexactly(length)
    return Reply(status, version, length)


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    lengths: set[int] = field(default_factory=set)

    def add(self, reply: Reply) -> None:
        self.statuses[reply.status] += 1
        self.versions[reply.version] += 1
        self.lengths.add(reply.length)


async def _throughput(port: int, requests: int, warmup: int, tally: Tally) -> float:
    """Requests per second over `requests` requests on CONCURRENCY keep-alive connections,
    after `warmup` requests on the same connections."""
    concurrency = CONCURRENCY
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]

    async def worker(n: int, count: int) -> None:
        reader, writer = conns[n]
        for i in range(count):
            visitor = VISITORS[(n * 37 + i) % len(VISITORS)]
            tally.add(await _exchange(reader, writer, request(PAGE, visitor)))

    try:
        await asyncio.gather(*(worker(n, warmup // concurrency) for n in range(concurrency)))
        share = requests // concurrency
        started = time.perf_counter()
        await asyncio.gather(*(worker(n, share) for n in range(concurrency)))
        return share * concurrency / (time.perf_counter() - started)
    finally:
        for _, writer in conns:
            writer.close()


def throughput(port: int, requests: int, tally: Tally, warmup: int = WARMUP) -> float:
    return asyncio.run(_throughput(port, requests, warmup, tally))


def sequential(port: int, requests: int, tally: Tally, warmup: int = WARMUP) -> list[float]:
    """Milliseconds per request, one at a time on one keep-alive connection."""
    times: list[float] = []
    with Conn(port) as conn:
        for i in range(warmup + requests):
            data = request(PAGE, VISITORS[i % len(VISITORS)])
            started = time.perf_counter()
            reply = conn.get(data)
            elapsed = (time.perf_counter() - started) * 1000
            tally.add(reply)
            if i >= warmup:
                times.append(elapsed)
    return times


def background_load(port: int, page: str, running: Any, done: Any, conn: Connection) -> None:
    """Process entry: 4 visitors' keep-alive connections, 5 ms apart each, while `running`
    is set; stops when `done` is set and sends back (requests, seconds busy, the replies that
    were not 200 as "STATUS from VERSION")."""

    async def main() -> tuple[int, float, list[str]]:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        counts: list[float] = [0, 0.0]
        bad: list[str] = []

        async def worker(n: int) -> None:
            reader, writer = conns[n]
            i = 0
            while not done.is_set():
                if not running.is_set():
                    await asyncio.sleep(0.005)
                    continue
                started = time.perf_counter()
                reply = await _exchange(reader, writer, request(page, VISITORS[(n * 50 + i) % 200]))
                counts[0] += 1
                counts[1] += time.perf_counter() - started + 0.005
                if reply.status != 200:
                    bad.append(f"{reply.status} from {reply.version}")
                i += 1
                await asyncio.sleep(0.005)

        await asyncio.gather(*(worker(n) for n in range(4)))
        return int(counts[0]), counts[1] / 4, bad

    detach()
    conn.send(asyncio.run(main()))


# -- switch-back time -------------------------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    abort_ms: float
    recovery_ms: float
    poll_ms: float
    """The mean time between two of the visitor's polls (the resolution of recovery_ms)."""
    candidate_after: int
    """The visitor's replies from the candidate after the first from the live version."""
    bad: list[str]
    """The visitor's replies that were not 200: "STATUS from VERSION at +MS after the call"."""


def switch_back(site: StaticSite, port: int, trial: int, running: Any) -> Switch:
    key = f"mttr-{trial}"
    site.deploy(key=key, path=MTTR_PAGE, files={"index.html": flask_page(True)}, title="Flask")
    site.shift(key, 50)
    with Conn(port) as conn:  # a visitor the gateway sends to the candidate
        visitor = next(
            v for v in VISITORS if conn.get(request(MTTR_PAGE, v)).version == f"candidate {key}"
        )
    polls: list[tuple[float, Reply]] = []
    stop = threading.Event()

    def poll() -> None:
        with Conn(port) as conn:
            data = request(MTTR_PAGE, visitor)
            while not stop.is_set():
                reply = conn.get(data)
                polls.append((time.perf_counter(), reply))

    # This times the switch alone (abort -> the gateway serving the live version); the full
    # time to recover, from detection by the canary controller to traffic on the baseline,
    # is recorded by the rollout itself. The background load runs from here to the end.
    running.set()
    poller = threading.Thread(target=poll, daemon=True)
    try:
        time.sleep(0.3)
        poller.start()
        time.sleep(0.2)
        first = len(polls)
        called = time.perf_counter()
        site.abort(key)
        returned = time.perf_counter()
        deadline = time.monotonic() + 5
        while not any(r.version != f"candidate {key}" for _, r in polls[first:]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"trial {trial}: the visitor still sees the candidate after 5 s")
            time.sleep(0.001)
        time.sleep(0.05)
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(timeout=10)
        running.clear()
    after = [(t, r) for t, r in polls if t > called]
    index = next(i for i, (_, r) in enumerate(after) if r.version != f"candidate {key}")
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(polls)]
    return Switch(
        abort_ms=(returned - called) * 1000,
        recovery_ms=(after[index][0] - called) * 1000,
        poll_ms=statistics.mean(gaps) * 1000,
        candidate_after=sum(r.version == f"candidate {key}" for _, r in after[index:]),
        bad=[
            f"{r.status} from {r.version} at {(t - called) * 1000:+.2f} ms"
            for t, r in polls
            if r.status != 200
        ],
    )


def flask_page(candidate: bool) -> bytes:
    return product_page("Field Flask", "sage green" if candidate else "slate", "34.00")


# -- the apps' own time, in-process -----------------------------------------------------------


def app_cost(app: Any, calls: int) -> float:
    """Microseconds per request for the ASGI app alone (no server, no sockets)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    scopes = [
        {
            "type": "http",
            "method": "GET",
            "path": f"/{PAGE}/",
            "query_string": b"",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"user-agent", b"shipyard-bench"),
                (b"accept", b"text/html"),
                (b"x-shipyard-client", v.encode()),
            ],
        }
        for v in VISITORS
    ]

    async def run() -> float:
        for scope in scopes:
            await app(scope, receive, send)
        started = time.perf_counter()
        for i in range(calls):
            await app(scopes[i % len(scopes)], receive, send)
        return (time.perf_counter() - started) / calls * 1e6

    return asyncio.run(run())


def profile(app: Any, calls: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    app_cost(app, calls)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(
        r"_gateway|_routes|static_site|pathlib|posixpath", 20
    )


# -- the run ----------------------------------------------------------------------------------


def build_sites(folder: Path) -> tuple[StaticSite, StaticSite]:
    """Two copies of the shop: one with the page live only, one with a canary on it too."""
    page = product_page("Trail Mug", "blue", "24.50")
    sites = []
    for name in ("plain", "canary"):
        site = StaticSite("shop", folder / name)
        site.publish(key="page-v1", path=PAGE, files={"index.html": page}, title="Trail Mug")
        sites.append(site)
    canary = sites[1]
    flask = flask_page(False)
    canary.publish(key="flask-v1", path=MTTR_PAGE, files={"index.html": flask}, title="Flask")
    candidate = product_page("Trail Mug", "sage green", "24.50")
    canary.deploy(key=CANDIDATE, path=PAGE, files={"index.html": candidate}, title="Trail Mug")
    canary.shift(CANDIDATE, 50)
    return sites[0], canary


@dataclass
class Scenario:
    name: str
    kind: str
    root: Path
    server: Server | None = None
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    app_us: list[float] = field(default_factory=list)


def rotated(items: list[Any], n: int) -> list[Any]:
    return items[n % len(items) :] + items[: n % len(items)]


def run(
    args: argparse.Namespace, folder: Path, cleanup: Callable[[Callable[[], Any]], Any]
) -> None:
    ctx = mp.get_context("spawn")
    plain, canary = build_sites(folder)
    db_url = f"sqlite:///{folder / 'shipyard.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    scenarios = [
        Scenario("direct", "direct", plain.root),
        Scenario("gateway", "gateway", plain.root),
        Scenario("gateway, canary 50%", "gateway", canary.root),
    ]
    for s in scenarios:
        s.server = start_server(ctx, s.name, s.kind, s.root, db_url, s.tally)
        cleanup(s.server.stop)
    size = len(product_page("Trail Mug", "blue", "24.50"))
    print(f"page: /{PAGE}/, {size} bytes; {len(VISITORS)} visitors; uvicorn {UVICORN}")
    print(
        f"{args.rounds} rounds x ({args.requests} requests at concurrency {CONCURRENCY}, "
        f"{args.sequential} at concurrency 1), {WARMUP} warm-up requests each"
    )
    print()

    for round_number in range(args.rounds):
        for s in rotated(scenarios, round_number):
            assert s.server is not None
            rate = throughput(s.server.port, args.requests, s.tally)
            times = sequential(s.server.port, args.sequential, s.tally)
            s.rates.append(rate)
            s.p50s.append(percentile(times, 50))
            s.p99s.append(percentile(times, 99))
            print(
                f"round {round_number + 1}, {s.name:<23} {rate:>8.0f} req/s   "
                f"p50 {s.p50s[-1]:.3f} ms   p99 {s.p99s[-1]:.3f} ms"
            )

    # How many of the visitors the canary route sends to the candidate (the split is by visitor).
    canary_server = scenarios[2].server
    assert canary_server is not None
    with Conn(canary_server.port) as conn:
        on_candidate = 0
        for visitor in VISITORS:
            reply = conn.get(request(PAGE, visitor))
            scenarios[2].tally.add(reply)
            on_candidate += reply.version == f"candidate {CANDIDATE}"

    # The apps alone, in this process: the gateway's own code per request.
    apps = [make_app(s.kind, s.root, None) for s in scenarios]
    for round_number in range(args.rounds):
        for s, app in rotated(list(zip(scenarios, apps, strict=True)), round_number):
            s.app_us.append(app_cost(app, 5000))

    # Switch-back: a background load on the flask page, then abort its candidate.
    gateway = scenarios[2].server
    assert gateway is not None
    running, done = ctx.Event(), ctx.Event()
    ours, theirs = ctx.Pipe()
    loader = ctx.Process(
        target=background_load, args=(gateway.port, MTTR_PAGE, running, done, theirs), daemon=True
    )
    with sigint_blocked():
        loader.start()
    theirs.close()
    cleanup(lambda: (done.set(), loader.join(10), loader.is_alive() and loader.kill()))
    switches = [switch_back(canary, gateway.port, n, running) for n in range(args.mttr_trials)]
    done.set()
    load = ours.recv() if ours.poll(15) else (0, 0.0, ["(the load process did not report)"])
    loader.join(10)

    for s in scenarios:  # SIGTERM: the canary gateway flushes its tallies
        assert s.server is not None
        s.server.stop()
    with session_factory(engine)() as session:
        recorded = dict(
            session.execute(
                select(ReleaseSampleRow.arm, func.sum(ReleaseSampleRow.requests))
                .where(ReleaseSampleRow.task_id == CANDIDATE)
                .group_by(ReleaseSampleRow.arm)
            ).all()
        )
    engine.dispose()

    report(scenarios, switches, recorded, load, on_candidate)
    if args.profile:
        print()
        print("profile of the gateway app (no candidate), in-process, by cumulative time:")
        profile(apps[1], 20000)


def report(
    scenarios: list[Scenario],
    switches: list[Switch],
    recorded: dict[str, int],
    load: tuple[int, float, list[str]],
    on_candidate: int,
) -> None:
    direct = scenarios[0]
    print()
    print(
        f"{'scenario':<25}{'req/s (c=8)':>12}{'vs direct':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'added p50 ms':>14}{'app us/req':>12}"
    )
    added: dict[str, float] = {}
    for s in scenarios:
        rate = statistics.median(s.rates)
        ratio = rate / statistics.median(direct.rates)
        if s is direct:
            extra = "-"
        else:
            # Paired by round; the serve-style row ran once, against the median direct p50.
            pairs = zip(s.p50s, direct.p50s, strict=False)
            added[s.name] = (
                statistics.median(a - b for a, b in pairs)
                if pairs
                else s.p50s[0] - statistics.median(direct.p50s)
            )
            extra = f"{added[s.name]:+.3f}"
        print(
            f"{s.name:<25}{rate:>12.0f}{ratio:>11.3f}{statistics.median(s.p50s):>9.3f}"
            f"{statistics.median(s.p99s):>9.3f}{extra:>14}{statistics.median(s.app_us):>12.1f}"
        )
    print(
        "(p50 / p99 at concurrency 1, ms; medians over rounds; added p50 paired by round;\n"
        " app us/req: the ASGI app called in-process, no server; every server listens on\n"
        " a socket made by `shipyard serve`'s own _listen)"
    )
    print()
    for name, extra in added.items():
        verdict = "MET" if extra <= TARGET_MS else "MISSED"
        print(f"target: {name} adds <= {TARGET_MS:.0f} ms p50: {extra:+.3f} ms  {verdict}")

    print()
    for s in scenarios:
        bad = sum(n for status, n in s.tally.statuses.items() if status != 200)
        versions = ", ".join(
            f"{v or '(no header)'} {n}" for v, n in sorted(s.tally.versions.items())
        )
        sizes = "/".join(str(n) for n in sorted(s.tally.lengths))
        print(
            f"{s.name}: {s.tally.statuses.total()} replies, {bad} not 200, "
            f"{sizes} bytes; {versions}"
        )
    canary = scenarios[2].tally
    sent = canary.statuses.total()
    share = canary.versions[f"candidate {CANDIDATE}"] / sent if sent else 0.0
    total = sum(recorded.values())
    print(
        f"canary split: {share:.1%} of the canary scenario's replies from the candidate "
        f"({on_candidate} of the {len(VISITORS)} visitors are on it); "
        f"release_samples holds {total} of its {sent} requests "
        f"(candidate {recorded.get('candidate', 0)}, baseline {recorded.get('baseline', 0)})"
    )

    print()
    n, seconds, load_bad = load
    rate = f"{n / seconds:.0f} req/s" if seconds else "?"
    print(
        f"switch-back on abort ({len(switches)} trials; background load 4 visitors on the "
        f"path, {rate}, {n} requests, {len(load_bad)} not 200):"
    )
    for label, values in (
        ("abort() call", [s.abort_ms for s in switches]),
        ("abort -> first live reply", [s.recovery_ms for s in switches]),
        ("poll interval", [s.poll_ms for s in switches]),
    ):
        each = f"   ({', '.join(f'{v:.2f}' for v in values)})" if len(values) <= 10 else ""
        print(
            f"  {label:<27} median {statistics.median(values):6.2f} ms   "
            f"max {max(values):7.2f} ms{each}"
        )
    flaps = sum(s.candidate_after for s in switches)
    bad = [f"trial {n}: {b}" for n, s in enumerate(switches) for b in s.bad]
    print(
        f"  candidate replies after the first live one: {flaps}; polled replies not 200: {len(bad)}"
    )
    for line in [*bad, *(f"background load: {b}" for b in load_bad)][:10]:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000, help="requests at concurrency 8")
    parser.add_argument("--sequential", type=int, default=3000, help="requests at concurrency 1")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three scenarios")
    parser.add_argument("--mttr-trials", type=int, default=10, help="aborts to time")
    parser.add_argument(
        "--profile", action="store_true", help="profile the gateway app in-process at the end"
    )
    args = parser.parse_args()
    print(f"machine: {machine_line('uvicorn')}")
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="shipyard-gateway-bench-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        try:
            run(args, folder, stack.callback)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the servers and removing", folder, file=sys.stderr)
            stack.close()
            sys.exit(130)
    print()
    print(f"load average at end: {load_average()}")
    print(f"wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
