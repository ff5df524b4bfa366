"""The gateway in front of a static site with a canary: who sees which version, what is
served at all, and what the recorder writes down. Driven in-process over ASGI."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.release import StaticSite
from shipyard.server import Gateway
from shipyard.server._gateway import Recorder
from shipyard.store import ReleaseSampleRow, make_engine, migrate, session_factory

TOKEN = "probe-token-for-tests"
LIVE_PAGE = {"index.html": b"<p>live</p>", "img/a.png": b"live-png"}
CANDIDATE_PAGE = {"index.html": b"<p>candidate</p>", "img/a.png": b"candidate-png"}
CANDIDATE = "task-candidate-1"
ROUTE = "/products/sku-1/"


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'shipyard.db'}")
    migrate(engine)
    return session_factory(engine)


@pytest.fixture
def site(tmp_path: Path) -> StaticSite:
    """Two live pages; a candidate for the first, taking no traffic yet."""
    site = StaticSite("storefront", tmp_path / "site")
    site.publish(key="task-live-1", path="products/sku-1", files=LIVE_PAGE, title="Mug")
    site.publish(key="task-live-2", path="products/sku-2", files={"index.html": b"<p>two</p>"})
    site.deploy(key=CANDIDATE, path="products/sku-1", files=CANDIDATE_PAGE, title="Mug v2")
    return site


@pytest.fixture
def app(site: StaticSite, sessions: sessionmaker[Session]) -> Gateway:
    return Gateway(site=site, sessions=sessions, probe_token=TOKEN, isolate=False)


def run(app: Gateway, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            await scenario(client)

    asyncio.run(main())


async def raw(
    app: Gateway, path: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> dict[str, Any]:
    """One request straight into the ASGI app, path as given (no client normalises it)."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(headers),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return {
        "status": sent[0]["status"],
        "headers": dict(sent[0]["headers"]),
        "body": sent[1]["body"],
    }


def version_of(reply: httpx.Response) -> str:
    return reply.headers["x-shipyard-version"]


def samples(sessions: sessionmaker[Session]) -> list[ReleaseSampleRow]:
    with sessions() as session:
        return list(session.scalars(select(ReleaseSampleRow).order_by(ReleaseSampleRow.id)))


async def versions_by_visitor(
    client: httpx.AsyncClient, visitors: list[str], *, times: int = 1
) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {v: set() for v in visitors}
    for _ in range(times):
        for visitor in visitors:
            reply = await client.get(ROUTE, headers={"X-Shipyard-Client": visitor})
            assert reply.status_code == 200
            seen[visitor].add(version_of(reply))
    return seen


def test_weight_zero_sends_everyone_to_the_live_version(app: Gateway, site: StaticSite) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        seen = await versions_by_visitor(client, [f"v{i}" for i in range(50)])
        assert set().union(*seen.values()) == {site.live_version()}
        reply = await client.get(ROUTE, headers={"X-Shipyard-Client": "v1"})
        assert reply.content == b"<p>live</p>"

    run(app, scenario)


def test_weight_splits_visitors_and_each_keeps_their_version(
    app: Gateway, site: StaticSite, sessions: sessionmaker[Session]
) -> None:
    visitors = [f"visitor-{i}" for i in range(200)]
    candidate = f"candidate {CANDIDATE}"
    live = site.live_version()
    assert live is not None
    found: dict[int, set[str]] = {}

    async def scenario(client: httpx.AsyncClient) -> None:
        for weight, times in ((50, 5), (75, 1), (100, 1)):
            site.shift(CANDIDATE, weight)
            seen = await versions_by_visitor(client, visitors, times=times)
            assert all(len(v) == 1 for v in seen.values()), "a visitor changed version"
            assert set().union(*seen.values()) <= {candidate, live}
            found[weight] = {v for v, versions in seen.items() if versions == {candidate}}
        reply = await client.get(ROUTE + "img/a.png", headers={"X-Shipyard-Client": "x"})
        assert (reply.content, reply.headers["content-type"]) == (b"candidate-png", "image/png")

    run(app, scenario)
    assert 70 <= len(found[50]) <= 130, len(found[50])  # 35-65 % of 200
    assert found[50] < found[75] < found[100] == set(visitors)

    app.recorder.flush()
    tally = Counter[str]()
    for row in samples(sessions):
        assert row.task_id == CANDIDATE
        tally[row.arm] += row.requests
    assert tally["candidate"] == 5 * len(found[50]) + len(found[75]) + 200 + 1
    assert tally["baseline"] == 5 * (200 - len(found[50])) + 200 - len(found[75])


def test_a_visitor_without_an_id_gets_a_cookie_and_keeps_their_version(
    app: Gateway, site: StaticSite
) -> None:
    site.shift(CANDIDATE, 50)

    async def scenario(client: httpx.AsyncClient) -> None:
        arms = Counter[str]()
        for _ in range(40):
            client.cookies.clear()
            first = await client.get(ROUTE)
            cookie = first.cookies.get("shipyard_visitor")
            assert cookie, first.headers
            assert "HttpOnly" in first.headers["set-cookie"]
            arms[version_of(first)] += 1
            for _ in range(5):
                again = await client.get(ROUTE, headers={"Cookie": f"shipyard_visitor={cookie}"})
                assert version_of(again) == version_of(first)
                assert "set-cookie" not in again.headers
        assert len(arms) == 2, arms  # both arms were handed out, and nobody moved

    run(app, scenario)


def test_the_arm_header_needs_the_probe_token_and_probes_are_not_counted(
    app: Gateway, site: StaticSite, sessions: sessionmaker[Session]
) -> None:
    live = site.live_version()

    async def scenario(client: httpx.AsyncClient) -> None:
        forced = {"X-Shipyard-Arm": "candidate", "X-Shipyard-Client": "someone"}
        for token in (None, "", "wrong-token", TOKEN + "x"):
            headers = forced if token is None else {**forced, "X-Shipyard-Probe": token}
            reply = await client.get(ROUTE, headers=headers)
            assert version_of(reply) == live, token
        probe = {**forced, "X-Shipyard-Probe": TOKEN}
        for _ in range(3):
            reply = await client.get(ROUTE, headers=probe)
            assert version_of(reply) == f"candidate {CANDIDATE}"
            assert reply.content == b"<p>candidate</p>"
            assert "set-cookie" not in reply.headers
        baseline = await client.get(ROUTE, headers={**probe, "X-Shipyard-Arm": "baseline"})
        assert version_of(baseline) == live

    run(app, scenario)
    app.recorder.flush()
    rows = samples(sessions)
    # Only the four refused probes counted (as the visitor they were: the live arm).
    assert [(r.task_id, r.arm, r.requests) for r in rows] == [(CANDIDATE, "baseline", 4)]


def test_a_non_ascii_probe_token_is_refused_like_a_wrong_one(
    app: Gateway, site: StaticSite
) -> None:
    async def scenario() -> None:
        reply = await raw(
            app,
            ROUTE,
            [(b"x-shipyard-arm", b"candidate"), (b"x-shipyard-probe", "é".encode("latin-1"))],
        )
        assert reply["status"] == 200
        assert reply["headers"][b"x-shipyard-version"] == str(site.live_version()).encode()

    asyncio.run(scenario())


def test_abort_sends_the_next_request_to_the_live_version(app: Gateway, site: StaticSite) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        site.shift(CANDIDATE, 100)
        headers = {"X-Shipyard-Client": "v1"}
        assert version_of(await client.get(ROUTE, headers=headers)) == f"candidate {CANDIDATE}"
        assert site.abort(CANDIDATE) is True
        reply = await client.get(ROUTE, headers=headers)
        assert (version_of(reply), reply.content) == (site.live_version(), b"<p>live</p>")
        assert "set-cookie" not in (await client.get(ROUTE)).headers

    run(app, scenario)


def test_paths_outside_the_route_are_unaffected(
    app: Gateway, site: StaticSite, sessions: sessionmaker[Session]
) -> None:
    site.shift(CANDIDATE, 100)

    async def scenario(client: httpx.AsyncClient) -> None:
        for path in ("/products/sku-2/", "/", "/products/sku-10/"):
            reply = await client.get(path)
            assert version_of(reply) == site.live_version(), path
            assert "set-cookie" not in reply.headers
        assert (await client.get("/products/sku-2/")).content == b"<p>two</p>"
        assert b"Mug" in (await client.get("/")).content  # the site map
        assert (await client.get("/products/sku-10/")).status_code == 404

    run(app, scenario)
    assert app.recorder.flush() == 0
    assert samples(sessions) == []


@pytest.mark.parametrize("arm", ["live", "candidate"])
@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/../../secret.txt",
        "/../../../secret.txt",
        "/products/sku-1/../../../secret.txt",
        "/products/sku-1/../../../../secret.txt",
        "/products/sku-1/../../../../../secret.txt",
        "/../routes.json",
        "/products/sku-1/../../routes.json",
        "/products/sku-1/../../../routes.json",
        "/.shipyard-version.json",
        "/products/sku-1/../../.shipyard-version.json",
        "/.shipyard-version.json/",
        "//secret.txt",
        "/products/sku-1//" + "/".join([".."] * 3) + "/secret.txt",
        "/products/sku-1/" + str(Path("/etc/hostname")),
        "/products/sku-1//etc/hostname",
        "//etc/hostname",
    ],
)
def test_nothing_outside_the_published_files_is_served(
    app: Gateway, site: StaticSite, tmp_path: Path, path: str, arm: str
) -> None:
    # A secret at every level a traversal could reach from versions/N/ or candidates/KEY/.
    for folder in (tmp_path, site.root, site.root / "versions", site.root / "candidates"):
        (folder / "secret.txt").write_text("TOP-SECRET")
    site.shift(CANDIDATE, 100 if arm == "candidate" else 0)
    assert (site.root / "routes.json").is_file()
    assert (site.root / "current" / ".shipyard-version.json").is_file()

    reply = asyncio.run(raw(app, path, [(b"x-shipyard-client", b"v1")]))

    assert reply["status"] == 404, reply
    assert b"TOP-SECRET" not in reply["body"]
    assert Path("/etc/hostname").read_bytes().strip() not in reply["body"]
    assert b'"releases"' not in reply["body"] and b"weight" not in reply["body"]


def test_a_directory_without_its_slash_is_redirected(app: Gateway) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for path in ("/products", "/products/sku-1", "/products/sku-1/img"):
            reply = await client.get(path, headers={"X-Shipyard-Client": "v1"})
            assert reply.status_code == 308, path
            assert reply.headers["location"] == path + "/"
        assert (await client.get("/products/sku-1/img/a.png")).status_code == 200

    run(app, scenario)


def test_the_candidate_arm_redirects_its_folder_without_a_slash_too(
    app: Gateway, site: StaticSite
) -> None:
    site.shift(CANDIDATE, 100)

    async def scenario(client: httpx.AsyncClient) -> None:
        reply = await client.get("/products/sku-1", headers={"X-Shipyard-Client": "v1"})
        assert version_of(reply) == f"candidate {CANDIDATE}"
        assert reply.status_code == 308
        assert reply.headers["location"] == "/products/sku-1/"

    run(app, scenario)


def test_the_redirect_keeps_the_query_string(app: Gateway) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        reply = await client.get("/products?utm=mail")
        assert reply.status_code == 308
        assert reply.headers["location"] == "/products/?utm=mail"

    run(app, scenario)


def test_head_reports_the_length_get_would_send(app: Gateway) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        got = await client.get("/products/sku-2/")
        head = await client.head("/products/sku-2/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"] != "0"

    run(app, scenario)


def test_healthz_answers_json(app: Gateway, site: StaticSite) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        reply = await client.get("/healthz")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/json"
        assert reply.json() == {
            "status": "ok",
            "site": "storefront",
            "version": site.live_version(),
            "handlers": [],
        }

    run(app, scenario)


def test_without_a_site_nothing_is_served(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/healthz")).json()["site"] is None

    run(Gateway(isolate=False), scenario)


def test_the_recorder_tallies_per_release_and_arm(sessions: sessionmaker[Session]) -> None:
    recorder = Recorder(sessions)
    for i in range(1500):
        recorder.add("task-a", "candidate", 500 if i % 10 == 0 else 200, float(i))
    for status in (200, 404, 499, 500, 503, 200):
        recorder.add("task-a", "baseline", status, 1.0)
    recorder.add("task-b", "candidate", 200, 2.5)

    assert recorder.flush() == 3
    rows = {(r.task_id, r.arm): r for r in samples(sessions)}
    assert set(rows) == {("task-a", "candidate"), ("task-a", "baseline"), ("task-b", "candidate")}
    big = rows[("task-a", "candidate")]
    assert (big.requests, big.errors) == (1500, 150)
    assert len(big.latencies) == 1000
    assert len(set(big.latencies)) == 1000
    assert all(0 <= x < 1500 for x in big.latencies)
    assert any(x >= 1000 for x in big.latencies), "the sample kept only the first requests"
    assert (rows[("task-a", "baseline")].requests, rows[("task-a", "baseline")].errors) == (6, 2)
    assert rows[("task-b", "candidate")].latencies == [2.5]
    assert big.at is not None

    assert recorder.flush() == 0  # what was written is not written twice
    recorder.add("task-a", "candidate", 200, 1.0)
    assert recorder.flush() == 1
    assert len(samples(sessions)) == 4


def test_the_recorder_keeps_serving_when_the_database_is_away(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'unmigrated.db'}")  # no release_samples table
    recorder = Recorder(session_factory(engine))
    recorder.add("task-a", "candidate", 200, 1.0)

    assert recorder.flush() == 0


def test_the_recorder_thread_flushes_and_stop_writes_the_rest(
    sessions: sessionmaker[Session],
) -> None:
    recorder = Recorder(sessions, interval=0.05)
    recorder.start()
    recorder.add("task-a", "candidate", 200, 1.0)
    for _ in range(100):
        if samples(sessions):
            break
        asyncio.run(asyncio.sleep(0.02))
    assert [r.requests for r in samples(sessions)] == [1]
    recorder.add("task-a", "candidate", 200, 1.0)
    recorder.stop()
    assert [r.requests for r in samples(sessions)] == [1, 1]


def test_the_gateway_file_is_private(tmp_path: Path) -> None:
    from shipyard.server import write_gateway_file

    path = tmp_path / "state" / "gateway.json"
    write_gateway_file(path, url="http://127.0.0.1:1", token="t", targets=["site"])

    assert json.loads(path.read_text())["token"] == "t"
    assert path.stat().st_mode & 0o077 == 0
