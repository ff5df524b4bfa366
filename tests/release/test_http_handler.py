"""The http-handler target: its routing state, and real handler processes behind the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.errors import InputError, StateError
from shipyard.release import HttpHandler
from shipyard.release._routes import read_routes
from shipyard.sandbox import bwrap_available
from shipyard.server import Gateway
from shipyard.store import ReleaseSampleRow, make_engine, migrate, session_factory

TOKEN = "probe-token-for-tests"
PREFIX = "/api/price/"

HANDLER = """
import os

VERSION = {version!r}


def handle(request):
    if request["path"] == "/boom":
        raise ValueError("boom")
    if request["path"] == "/created":
        return 201, {{"created": request["body"], "version": VERSION}}
    return {{"version": VERSION, "pid": os.getpid(), "request": request}}
"""


def handler(version: str) -> dict[str, bytes]:
    return {"handler.py": HANDLER.format(version=version).encode()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder laid out as Shipyard lays it out, with a real database in it."""
    root = tmp_path / "shop"
    migrate(make_engine(f"sqlite:///{root / '.shipyard' / 'shipyard.db'}"))
    return root


@pytest.fixture
def api(project: Path) -> HttpHandler:
    return HttpHandler("api", project / ".shipyard" / "sites" / "api", mount="/api")


def route(api: HttpHandler) -> dict[str, Any]:
    return read_routes(api.root)[PREFIX]


# -- the target's state ----------------------------------------------------------------------


def test_deploy_needs_a_handler_file(api: HttpHandler) -> None:
    with pytest.raises(InputError, match=r"handler\.py") as caught:
        api.deploy(key="k1", path="price", files={"main.py": b"x = 1"})

    assert "main.py" in str(caught.value)
    assert read_routes(api.root) == {}
    assert not api.version_dir("k1").exists()


@pytest.mark.parametrize("path", ["", "/", ".", "..", "a/../../b"])
def test_deploy_needs_a_route_name(api: HttpHandler, path: str) -> None:
    with pytest.raises(InputError, match="not a route name"):
        api.deploy(key="k1", path=path, files=handler("v1"))


def test_deploy_refuses_files_leaving_the_version_folder(api: HttpHandler) -> None:
    with pytest.raises(InputError, match="leaves its folder"):
        api.deploy(key="k1", path="price", files={**handler("v1"), "../evil.py": b"x"})

    assert not (api.root / "versions" / "evil.py").exists()
    assert read_routes(api.root) == {}


def test_deploy_stages_a_candidate_taking_no_traffic(api: HttpHandler) -> None:
    deployed = api.deploy(key="k1", path="/price/", files=handler("v1"), title="Prices")

    assert (deployed.key, deployed.url_path, deployed.version) == ("k1", PREFIX, "k1")
    assert deployed.already is False
    assert route(api) == {
        "path": "price",
        "live": None,
        "previous": [],
        "candidate": "k1",
        "weight": 0.0,
        "title": "Prices",
    }
    assert (api.version_dir("k1") / "handler.py").read_text() == HANDLER.format(version="v1")
    assert api.health("k1") is None
    assert "missing" in str(api.health("nope"))

    again = api.deploy(key="k1", path="price", files=handler("other"))
    assert again.already is True
    assert b"'v1'" in (api.version_dir("k1") / "handler.py").read_bytes()


def test_shift_sets_the_candidate_weight(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))

    api.shift("k1", 20)
    api.shift("k1", 20)

    assert route(api)["weight"] == 20.0
    with pytest.raises(StateError, match="no candidate"):
        api.shift("k2", 50)


def test_promote_and_withdraw_walk_the_live_history(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.shift("k1", 50)

    first = api.promote("k1")
    assert (first.url_path, first.version, first.already) == (PREFIX, "k1", False)
    assert route(api) | {"title": ""} == {
        "path": "price",
        "live": "k1",
        "previous": [],
        "candidate": None,
        "weight": 0.0,
        "title": "",
    }
    assert api.promote("k1").already is True
    assert api.live_keys() == {PREFIX: "k1"}

    assert api.deploy(key="k1", path="price", files=handler("v1")).already is True
    api.deploy(key="k2", path="price", files=handler("v2"))
    assert (route(api)["live"], route(api)["candidate"]) == ("k1", "k2")
    api.promote("k2")
    assert (route(api)["live"], route(api)["previous"]) == ("k2", ["k1"])
    assert api.promote("k2").already is True
    assert route(api)["previous"] == ["k1"]

    assert api.withdraw("k2") == "k1"
    assert (route(api)["live"], route(api)["previous"]) == ("k1", [])
    assert api.withdraw("k2") is None
    assert route(api)["live"] == "k1"

    assert api.withdraw("k1") == ""  # the first release: nothing to go back to
    assert read_routes(api.root) == {}
    assert api.withdraw("k1") is None
    assert api.live_keys() == {}


def test_withdraw_keeps_a_baking_candidate(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.promote("k1")
    api.deploy(key="k2", path="price", files=handler("v2"))
    api.shift("k2", 10)

    assert api.withdraw("k1") == ""

    assert (route(api)["live"], route(api)["candidate"], route(api)["weight"]) == (None, "k2", 10)


def test_abort_drops_the_candidate_and_keeps_the_live_version(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.promote("k1")
    api.deploy(key="k2", path="price", files=handler("v2"))
    api.shift("k2", 50)

    assert api.abort("k2") is True
    assert (route(api)["live"], route(api)["candidate"], route(api)["weight"]) == ("k1", None, 0)
    assert not api.version_dir("k2").exists()
    assert api.version_dir("k1").is_dir()
    assert api.abort("k2") is False
    assert api.abort("k1") is False  # live, not a candidate: abort leaves it alone
    assert route(api)["live"] == "k1"
    with pytest.raises(StateError, match="neither a candidate nor live"):
        api.promote("k2")


def test_abort_of_a_first_release_unroutes_it(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))

    assert api.abort("k1") is True

    assert read_routes(api.root) == {}
    assert api.abort("k1") is False


def test_a_second_candidate_on_a_busy_route_waits(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))

    with pytest.raises(StateError) as caught:
        api.deploy(key="k2", path="price", files=handler("v2"))

    assert caught.value.details["busy_with"] == "k1"
    assert not api.version_dir("k2").exists()
    assert route(api)["candidate"] == "k1"
    # Another route is free.
    assert api.deploy(key="k2", path="stock", files=handler("v2")).url_path == "/api/stock/"


# -- through the gateway, with real handler processes ---------------------------------------


@asynccontextmanager
async def serving(app: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """The app under the ASGI lifespan protocol (as uvicorn runs it), and a client for it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(outbox.get(), 10))["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=30
        ) as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await asyncio.wait_for(outbox.get(), 20))["type"] == "lifespan.shutdown.complete"
        await lifespan


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def test_a_live_handler_answers_with_the_request_it_was_given(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.promote("k1")
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)
    pids: list[int] = []

    async def scenario() -> None:
        async with serving(app) as client:
            reply = await client.post(
                "/api/price/sku-1/detail",
                params={"color": "red", "size": "x l"},
                json={"qty": 2, "note": "é"},
                headers={"X-Custom": "yes"},
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["x-shipyard-version"] == "k1"
            assert reply.headers["content-type"] == "application/json"
            answer = reply.json()
            assert answer["version"] == "v1"
            request = answer["request"]
            assert request["method"] == "POST"
            assert request["path"] == "/sku-1/detail"
            assert request["query"] == {"color": "red", "size": "x l"}
            assert request["body"] == {"qty": 2, "note": "é"}
            assert request["headers"]["x-custom"] == "yes"
            assert "x-shipyard-synthetic" not in request["headers"]
            assert "set-cookie" not in reply.headers  # no canary: no visitor id needed
            pids.append(answer["pid"])

            bare = (await client.get("/api/price")).json()["request"]
            assert (bare["path"], bare["query"], bare["body"]) == ("/", {}, None)

            created = await client.post("/api/price/created", json=["a"])
            assert (created.status_code, created.json()) == (
                201,
                {"created": ["a"], "version": "v1"},
            )

            broken = await client.get("/api/price/boom")
            assert broken.status_code == 500
            assert broken.json() == {"error": "internal error"}  # the details stay in the log
            after = await client.get("/api/price/sku-1")
            assert (after.status_code, after.json()["pid"]) == (200, pids[0])

            not_json = await client.post("/api/price/sku-1", content=b"{not json")
            assert not_json.status_code == 400
            assert "not JSON" in not_json.json()["error"]

            elsewhere = await client.get("/api/stock/sku-1")
            assert elsewhere.status_code == 404
            assert "no handler is released" in elsewhere.json()["error"]
            health = (await client.get("/healthz")).json()
            assert (health["site"], health["handlers"]) == (None, ["api"])

            os.kill(pids[0], 9)  # a crashed process is started again on the next request
            assert await gone(pids[0])
            restarted = await client.get("/api/price/sku-1")
            assert restarted.status_code == 200
            pids.append(restarted.json()["pid"])
            assert pids[1] != pids[0]
        assert await gone(pids[1]), "shutdown left the handler running"

    asyncio.run(scenario())


def test_an_encoded_question_mark_stays_in_the_path(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.promote("k1")
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)

    async def scenario() -> None:
        async with serving(app) as client:
            reply = await client.get("/api/price/what%3Fnow", params={"a": "1"})
            request = reply.json()["request"]
            assert (request["path"], request["query"]) == ("/what?now", {"a": "1"})

    asyncio.run(scenario())


def test_a_handler_that_cannot_be_imported_is_a_502_naming_its_version(
    api: HttpHandler,
) -> None:
    api.deploy(key="k-broken", path="price", files={"handler.py": b"import no_such_module\n"})
    api.promote("k-broken")
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)

    async def scenario() -> None:
        async with serving(app) as client:
            reply = await client.get("/api/price/sku-1")
            assert reply.status_code == 502
            assert reply.headers["x-shipyard-version"] == "k-broken"
            error = reply.json()["error"]
            assert "k-broken" in error
            assert "no_such_module" in error

    asyncio.run(scenario())


@pytest.fixture
def sessions(project: Path) -> sessionmaker[Session]:
    return session_factory(make_engine(f"sqlite:///{project / '.shipyard' / 'shipyard.db'}"))


def test_the_candidate_takes_its_weight_and_probes_are_marked(
    api: HttpHandler, sessions: sessionmaker[Session]
) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.promote("k1")
    api.deploy(key="k2", path="price", files=handler("v2"))
    app = Gateway(handlers=[api], sessions=sessions, probe_token=TOKEN, isolate=False)

    async def get(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
        reply = await client.get("/api/price/sku-1", headers=headers)
        assert reply.status_code == 200, reply.text
        answer: dict[str, Any] = reply.json()
        assert reply.headers["x-shipyard-version"] == {"v1": "k1", "v2": "k2"}[answer["version"]]
        return answer

    async def scenario() -> None:
        async with serving(app) as client:
            visitor = {"X-Shipyard-Client": "visitor-1"}
            assert (await get(client, visitor))["version"] == "v1"  # weight 0
            api.shift("k2", 100)
            answer = await get(client, visitor)
            assert answer["version"] == "v2"
            assert "x-shipyard-synthetic" not in answer["request"]["headers"]

            probe = await get(client, {"X-Shipyard-Arm": "baseline", "X-Shipyard-Probe": TOKEN})
            assert probe["version"] == "v1"
            headers = probe["request"]["headers"]
            assert headers["x-shipyard-synthetic"] == "1"
            assert not {"x-shipyard-probe", "x-shipyard-arm"} & set(headers)
            assert TOKEN not in json.dumps(probe)

            forced = {"X-Shipyard-Arm": "baseline", "X-Shipyard-Probe": "wrong"}
            refused = await get(client, {**forced, **visitor})
            assert refused["version"] == "v2"  # the visitor's own arm
            headers = refused["request"]["headers"]
            assert not {"x-shipyard-synthetic", "x-shipyard-probe", "x-shipyard-arm"} & set(headers)

            api.shift("k2", 0)
            assert (await get(client, visitor))["version"] == "v1"

    asyncio.run(scenario())
    with sessions() as session:
        rows = session.scalars(select(ReleaseSampleRow)).all()
    counted = {(r.task_id, r.arm): r.requests for r in rows}
    assert counted == {("k2", "baseline"): 2, ("k2", "candidate"): 2}  # not the probe


def test_a_client_cannot_mark_its_own_request_synthetic(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.promote("k1")
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)

    async def scenario() -> None:
        async with serving(app) as client:
            reply = await client.get("/api/price/sku-1", headers={"X-Shipyard-Synthetic": "1"})
            assert "x-shipyard-synthetic" not in reply.json()["request"]["headers"]

    asyncio.run(scenario())


def test_a_candidate_without_a_live_version_is_404_for_the_baseline(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.shift("k1", 50)
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)

    async def scenario() -> None:
        async with serving(app) as client:
            statuses = set()
            for n in range(20):
                reply = await client.get("/api/price/x", headers={"X-Shipyard-Client": f"v{n}"})
                statuses.add(reply.status_code)
                if reply.status_code == 404:
                    assert "no version of /api/price/ is live yet" in reply.json()["error"]
            assert statuses == {200, 404}

    asyncio.run(scenario())


def test_the_reconciler_stops_versions_no_longer_routed(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=handler("v1"))
    api.promote("k1")
    api.deploy(key="k2", path="price", files=handler("v2"))
    api.shift("k2", 100)
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)

    async def pid(client: httpx.AsyncClient, arm: str) -> int:
        reply = await client.get(
            "/api/price/", headers={"X-Shipyard-Arm": arm, "X-Shipyard-Probe": TOKEN}
        )
        return int(reply.json()["pid"])

    async def scenario() -> None:
        async with serving(app) as client:
            live, candidate = await pid(client, "baseline"), await pid(client, "candidate")
            assert live != candidate

            api.abort("k2")
            assert await gone(candidate), "the aborted candidate's process is still running"
            assert alive(live)

            api.deploy(key="k3", path="price", files=handler("v3"))
            newer = await pid(client, "candidate")
            api.promote("k3")
            assert await gone(live), "the replaced live version's process is still running"
            assert (await client.get("/api/price/")).json()["pid"] == newer

            api.withdraw("k3")
            api.withdraw("k1")
            assert await gone(newer)
            assert (await client.get("/api/price/")).status_code == 404

    asyncio.run(scenario())


CONFINED = """
import os
import socket

PORT = {port}
SECRET = {secret!r}


def handle(request):
    seen = {{}}
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=2):
            seen["tcp"] = "connected"
    except OSError as exc:
        seen["tcp"] = type(exc).__name__
    try:
        with open(SECRET, "rb") as handle:
            seen["database"] = handle.read(15).decode()
    except OSError as exc:
        seen["database"] = type(exc).__name__
    seen["own_files"] = sorted(os.listdir(os.path.dirname(__file__)))
    return seen
"""


@pytest.mark.parametrize("isolate", [False, None], ids=["plain", "bubblewrap"])
def test_a_served_handler_is_confined(
    api: HttpHandler, project: Path, isolate: bool | None
) -> None:
    if isolate is None and not bwrap_available():
        pytest.skip("bubblewrap is not available here")
    database = project / ".shipyard" / "shipyard.db"
    assert database.read_bytes().startswith(b"SQLite format 3")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        source = CONFINED.format(port=port, secret=str(database))
        api.deploy(key="k1", path="price", files={"handler.py": source.encode()})
        api.promote("k1")
        app = Gateway(handlers=[api], probe_token=TOKEN, isolate=isolate)

        async def scenario() -> dict[str, Any]:
            async with serving(app) as client:
                reply = await client.get("/api/price/")
                assert reply.status_code == 200, reply.text
                answer: dict[str, Any] = reply.json()
                return answer

        seen = asyncio.run(scenario())

    assert seen["own_files"] == ["handler.py"]
    if isolate is False:  # the control: the same handler, unconfined, reaches both
        assert seen == {
            "tcp": "connected",
            "database": "SQLite format 3",
            "own_files": ["handler.py"],
        }
    else:
        assert seen["tcp"] != "connected", seen
        assert seen["database"] in {"FileNotFoundError", "PermissionError"}, seen


SLOW = """
import time


def handle(request):
    if request["path"] == "/slow":
        time.sleep({seconds})
    return {{"ok": True}}
"""


def slow(seconds: float) -> dict[str, bytes]:
    """A handler whose /slow takes ``seconds`` (longer than the reconciler's 0.5 s period)."""
    return {"handler.py": SLOW.format(seconds=seconds).encode()}


def test_stopping_an_unrouted_version_does_not_stall_other_requests(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=slow(0))
    api.promote("k1")
    api.deploy(key="k2", path="price", files=slow(2))
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)
    probe = {"X-Shipyard-Arm": "candidate", "X-Shipyard-Probe": TOKEN}

    async def scenario() -> float:
        async with serving(app) as client:
            assert (await client.get("/api/price/", headers=probe)).status_code == 200
            pending = asyncio.create_task(client.get("/api/price/slow", headers=probe))
            await asyncio.sleep(0.2)
            api.abort("k2")
            # How late the loop runs anything (a request, a 20 ms timer) while k2 is stopped.
            worst, deadline = 0.0, time.monotonic() + 1.0
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert (await client.get("/healthz")).status_code == 200
                await asyncio.sleep(0.02)
                worst = max(worst, time.monotonic() - started)
            await asyncio.gather(pending, return_exceptions=True)
            return worst

    assert asyncio.run(scenario()) < 0.5


def test_a_request_in_flight_on_a_replaced_version_finishes(api: HttpHandler) -> None:
    api.deploy(key="k1", path="price", files=slow(1.2))
    api.promote("k1")
    api.deploy(key="k2", path="price", files=slow(0))
    app = Gateway(handlers=[api], probe_token=TOKEN, isolate=False)
    visitor = {"X-Shipyard-Client": "visitor-1"}  # weight 0: the live version, k1

    async def scenario() -> httpx.Response:
        async with serving(app) as client:
            assert (await client.get("/api/price/", headers=visitor)).status_code == 200
            pending = asyncio.create_task(client.get("/api/price/slow", headers=visitor))
            await asyncio.sleep(0.2)
            api.promote("k2")
            return await pending

    reply = asyncio.run(scenario())
    assert reply.headers["x-shipyard-version"] == "k1"
    assert (reply.status_code, reply.json()) == (200, {"ok": True})
