"""Fixtures for driving the web console in a real browser: Debian's Chromium under Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium, which
scripts/bootstrap.sh installs with apt. The console is served by the same ASGI app as the API
(``create_app``), in uvicorn on a free loopback port, over the e-commerce example with a worker
running its tasks. Screenshots land in test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, Request, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from shipyard.config import Project
from shipyard.service import Runtime
from support import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000
"""How long one browser action or expectation may take before the test fails."""


def shot(page: Page, name: str) -> Path:
    """Save a full-page PNG of ``page`` as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(name="shot")
def shot_fixture(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """``shot(page, name)`` for tests (a conftest is not importable). In a test run on both
    databases the name gets the database's (``tasks-postgresql``): one run keeps the other's."""
    callspec = getattr(request.node, "callspec", None)
    database = callspec.params.get("database") if callspec else None
    if database is None:
        return shot
    return lambda page, name: shot(page, f"{name}-{database}")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium, one per module: Playwright's sync API keeps an event loop
    running on this thread while it is open, and later tests launch DBOS on this thread."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh (it installs chromium)")
    launched = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


_OUTCOME = pytest.StashKey[pytest.TestReport]()
"""The test's own outcome (its "call" phase), for the ``page`` fixture's teardown."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context (no cookies). Requests leaving loopback are refused and make
    the test fail (the console must work offline); so does an uncaught script error. A failed
    test leaves a screenshot of where the browser was."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    script_errors: list[str] = []

    def loopback_only(route: Route, req: Request) -> None:
        host = urlsplit(req.url).hostname or ""
        if req.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(req.url)
            route.abort()

    context.route("**/*", loopback_only)
    opened = context.new_page()
    opened.on("pageerror", lambda exc: script_errors.append(str(exc)))
    yield opened
    outcome = request.node.stash.get(_OUTCOME, None)
    if outcome is not None and outcome.failed:
        with suppress(PlaywrightError):  # the page may be gone; the failure says why
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
            shot(opened, f"failed-{name}")
    context.close()
    assert not outside, f"the console asked for resources off this machine: {outside}"
    assert not script_errors, f"the console's scripts failed: {script_errors}"


@contextmanager
def serving(rt: Runtime) -> Iterator[str]:
    """The app serving /api/v1 and /console/ in uvicorn on a free loopback port; its URL."""
    from shipyard.server import create_app  # the console's factory (API and console together)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(rt, requests_per_minute=600)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the console's server did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def rt(project: Project, start_worker: Callable[..., Runtime]) -> Runtime:
    """A worker over the e-commerce example (SQLite and PostgreSQL).

    Launched from a helper thread: Playwright's sync API leaves its event loop marked as
    running on the main thread, and DBOS refuses its blocking calls under a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(start_worker, project).result()


@pytest.fixture
def console(rt: Runtime) -> Iterator[str]:
    """The console (with the API) served over ``rt``; its base URL."""
    with serving(rt) as url:
        yield url
