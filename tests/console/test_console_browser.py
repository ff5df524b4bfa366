"""The web console as a person uses it, in headless Chromium: sign in with a token, watch a
task arrive, read its diff in the approval queue, approve it (with the mouse, and with the
keyboard alone), follow it to published, and read its artifact's lineage, the releases and
the figures. Every page visited leaves a screenshot in test-artifacts/screenshots/.

The console runs over the e-commerce example on SQLite and PostgreSQL with a real worker; the
task is submitted as alice (an operator) and decided by bob (an approver), since nobody may
approve their own work.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect

from repos_support import EXAMPLE_GOAL, repo_example
from shipyard.config import load_project
from shipyard.jobs import BatchRow
from shipyard.sandbox import bwrap_available
from shipyard.server import create_app, create_token
from shipyard.service import Runtime, approval_queue, find_task, submit, submit_change
from support import PRODUCT, SETTLED, wait_for_state

Shot = Callable[[Page, str], Path]

LIVE_UPDATE_MS = 8_000
"""The task list polls every few seconds: a new task shows up within this without a reload."""
PUBLISH_TIMEOUT = 60.0


def _submit(rt: Runtime) -> str:
    """A landing-page task for PRODUCT, submitted as alice; its id.

    Submitted from a helper thread: Playwright's sync API leaves an event loop marked as
    running on the main thread, under which DBOS's client would block (and warn)."""
    rows = [BatchRow(where="console test", data=PRODUCT)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(submit, rt, rt.jobs.get("landing-page"), rows, submitted_by="alice")
        result = job.result()
    assert result.rejected == []
    [task_id] = result.submitted
    return task_id


def _sign_in(page: Page, url: str, rt: Runtime, person: str, role: str) -> None:
    """Sign in on the login page with a fresh token for ``person`` as ``role``."""
    page.goto(url + "/console/login")
    page.fill("input[name=token]", create_token(rt, person, role, actor="ops")[1])
    page.click("button[type=submit]")
    expect(page).to_have_url(url + "/console/")


def _forms_carry_csrf(page: Page) -> None:
    """Every form that changes something carries the session's CSRF token."""
    forms = page.locator("form")
    for n in range(forms.count()):
        form = forms.nth(n)
        if (form.get_attribute("method") or "get").lower() != "post":
            continue  # a GET form (a filter) changes nothing; a token in a URL would leak
        csrf = form.locator("input[type=hidden][name=csrf]")
        assert csrf.count() == 1, f"a form on {page.url} has no hidden csrf input"
        if form.get_attribute("action") != "/console/login":
            assert csrf.get_attribute("value"), f"a form on {page.url} has an empty csrf token"


def _task_state(page: Page) -> str:
    return page.locator(".state").first.inner_text().strip()


def _wait_until_published(page: Page, task_id: str) -> None:
    """Reload the task page until it says published (bounded; names the last state seen)."""
    deadline = time.monotonic() + PUBLISH_TIMEOUT
    while True:
        state = _task_state(page)
        if state == "published":
            return
        assert time.monotonic() < deadline, (
            f"the page of {task_id} still says {state!r} after {PUBLISH_TIMEOUT}s"
        )
        page.wait_for_timeout(500)
        page.reload()


def test_a_bad_token_is_refused_and_a_good_one_opens_a_session(
    rt: Runtime, console: str, page: Page, shot: Shot
) -> None:
    page.goto(console + "/console/")
    expect(page).to_have_url(console + "/console/login")  # signed out: to the login page
    page.fill("input[name=token]", "shy_000000000000_" + "A" * 43)
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_be_visible()
    expect(page.locator("input[name=token]")).to_be_visible()  # the form again
    cookies = [c["name"] for c in page.context.cookies()]
    assert "shipyard_session" not in cookies, "a refused token must not get a session"
    _forms_carry_csrf(page)
    shot(page, "login")

    _sign_in(page, console, rt, "carol", "viewer")
    [session] = [c for c in page.context.cookies() if c["name"] == "shipyard_session"]
    assert session["httpOnly"], "the session cookie must be out of the page scripts' reach"
    expect(page.locator("table#tasks")).to_be_visible()


def test_an_approver_takes_a_task_from_the_queue_to_published(
    rt: Runtime, console: str, page: Page, shot: Shot
) -> None:
    url = console
    _sign_in(page, url, rt, "bob", "approver")
    expect(page.locator("table#tasks")).to_be_visible()

    task_id = _submit(rt)
    row = page.locator(f'tr[data-task="{task_id}"]')
    expect(row).to_be_visible(timeout=LIVE_UPDATE_MS)  # without a reload: the list polls
    expect(row.locator(f'a[href="/console/tasks/{task_id}"]')).to_be_visible()
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    shot(page, "tasks")

    page.click('a[href="/console/approvals"]')
    link = page.locator(f'a[href="/console/approvals/{task_id}"]')
    expect(link).to_be_visible()
    _forms_carry_csrf(page)
    shot(page, "approvals")

    link.click()
    expect(page.locator("#diff")).to_contain_text(PRODUCT["name"])  # the generated page
    _forms_carry_csrf(page)
    shot(page, "approval")
    page.fill("textarea[name=reason]", "copy and price match the catalogue")
    page.click("button[name=decision][value=approve]")
    expect(page).to_have_url(f"{url}/console/tasks/{task_id}")

    _wait_until_published(page, task_id)
    assert find_task(rt, task_id).state == "published"
    rt.tracing.flush()  # spans are written in batches
    page.reload()
    _read_the_task_page(page, task_id)
    shot(page, "task")

    artifact = find_task(rt, task_id).artifact_id
    page.goto(f"{url}/console/artifacts/{artifact}")
    expect(page.locator("#provenance")).to_contain_text(task_id)
    lineage = page.locator("svg#lineage")
    expect(lineage).to_be_visible()
    expect(lineage).to_contain_text(task_id)  # the task that made the artifact is in its graph
    shot(page, "artifact")

    page.goto(url + "/console/releases")
    rollback = f'table#releases tr[data-task="{task_id}"] button[name=command][value=rollback]'
    expect(page.locator(f'table#releases tr[data-task="{task_id}"]')).to_be_visible()
    expect(page.locator(rollback)).to_have_count(0)  # an approver may not roll back
    page.context.clear_cookies()
    _sign_in(page, url, rt, "alice", "operator")
    page.goto(url + "/console/releases")
    expect(page.locator(rollback)).to_be_visible()  # an operator may
    _forms_carry_csrf(page)
    shot(page, "releases")

    page.goto(url + "/console/stats")
    expect(page.locator("svg.chart").first).to_be_visible()
    shot(page, "stats")


def _read_the_task_page(page: Page, task_id: str) -> None:
    expect(page.locator("h1")).to_contain_text(task_id)
    assert page.locator("ol#timeline li").count() >= 3, "the timeline has a step per stage"
    attempt = page.locator("section.attempt").first
    expect(attempt.locator("pre.code")).to_contain_text(PRODUCT["name"])
    expect(page.locator("#diff")).to_be_attached()
    expect(page.locator("#trace")).to_contain_text("validate")  # the waterfall's spans
    expect(page.locator("#trace")).to_contain_text("gate")
    expect(page.locator("#cost")).to_contain_text(re.compile(r"\d"))


def test_the_pages_read_without_javascript(rt: Runtime, console: str, browser: Browser) -> None:
    task_id = _submit(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        _sign_in(page, console, rt, "carol", "viewer")
        expect(page.locator(f'tr[data-task="{task_id}"]')).to_be_visible()
        page.goto(f"{console}/console/tasks/{task_id}")
        expect(page.locator("h1")).to_contain_text(task_id)
        expect(page.locator("section.attempt pre.code").first).to_contain_text(PRODUCT["name"])
        page.goto(f"{console}/console/approvals/{task_id}")
        expect(page.locator("#diff")).to_contain_text(PRODUCT["name"])
    finally:
        context.close()


def test_an_approval_can_be_made_with_the_keyboard_alone(
    rt: Runtime, console: str, page: Page
) -> None:
    url = console
    task_id = _submit(rt)
    _sign_in(page, url, rt, "bob", "approver")
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    page.goto(f"{url}/console/approvals/{task_id}")

    # A forged form post (no CSRF token) is refused and changes nothing.
    action = page.locator("form:has(textarea[name=reason])").get_attribute("action") or page.url
    forged = page.request.post(
        url + action if action.startswith("/") else action,
        form={"decision": "approve", "reason": "forged"},
        max_redirects=0,
    )
    assert find_task(rt, task_id).state == "waiting_approval"
    assert forged.status >= 400, f"a post without a CSRF token got {forged.status}"

    _tab_to(page, "textarea[name=reason]", presses=60)
    page.keyboard.type("checked with the keyboard")
    _tab_to(page, "button[name=decision][value=approve]", presses=10)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{url}/console/tasks/{task_id}")
    assert wait_for_state(rt, task_id, {"published"}) == "published"


def _tab_to(page: Page, selector: str, *, presses: int) -> None:
    """Press Tab until ``selector`` has the focus (at most ``presses`` times)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    focused = page.evaluate("() => document.activeElement?.outerHTML.slice(0, 120)")
    raise AssertionError(f"{presses} Tab presses never reached {selector}; focus on {focused}")


@pytest.fixture
def change_console(
    tmp_path: Path, start_worker: Callable[..., Runtime]
) -> Iterator[tuple[Runtime, str]]:
    """The repository-change example (its recorded replies as the model) with a worker, a
    change submitted by its developer and waiting for a decision, and the console over it:
    (the runtime, the console's URL). The waits run on a helper thread, as ``rt``'s do."""
    if not bwrap_available():
        pytest.skip("a repository change's tests run in bubblewrap, which is not usable here")
    project = load_project(repo_example(tmp_path / "example"))

    def ready() -> Runtime:
        rt = start_worker(project)
        [task_id] = submit_change(rt, "inventory", EXAMPLE_GOAL, submitted_by="developer").submitted
        assert wait_for_state(rt, task_id, SETTLED, timeout=180) == "waiting_approval"
        return rt

    with ThreadPoolExecutor(max_workers=1) as pool:
        rt = pool.submit(ready).result()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(rt), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the console's server did not start"
        time.sleep(0.02)
    yield rt, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=15)


def test_a_repository_change_is_decided_on_its_tests_and_its_diff_by_file(
    change_console: tuple[Runtime, str], page: Page, shot: Shot
) -> None:
    rt, url = change_console
    [task] = [w.task for w in approval_queue(rt)]
    page.goto(url + "/console/login")
    page.fill("input[name=token]", create_token(rt, "reviewer", "approver", actor="reviewer")[1])
    page.click("button[type=submit]")
    page.goto(f"{url}/console/approvals/{task.id}")

    change = page.locator("div.change")
    expect(change.locator(".change-facts")).to_contain_text(
        re.compile(r"Tests: \d+ passed, 0 failed")
    )
    stock = change.locator("details.change-file", has_text="inventory/stock.py")
    expect(stock.locator("summary")).to_contain_text("modified")
    added = stock.locator("tr.added", has_text="OutOfStock").first
    expect(added).to_be_visible()
    assert re.fullmatch(r"\d+", added.locator("td.ln").nth(1).inner_text().strip())
    _forms_carry_csrf(page)
    shot(page, "approval-change")

    # From the top of the page, the skip link takes the keyboard past the diff to the form.
    page.locator("a[href='#decision']").focus()
    page.keyboard.press("Enter")
    _tab_to(page, "textarea[name=reason]", presses=1)
    page.keyboard.type("the fix and its test read right")
    _tab_to(page, "button[name=decision][value=approve]", presses=3)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{url}/console/tasks/{task.id}")
    expect(page.locator("section.attempt div.change").first).to_be_visible()
    # Attempt 1 failed a test: the finding sits right under the line it names.
    expect(page.locator("#change-1 tr.added + tr.finding-row")).to_contain_text("pytest.failed")
    shot(page, "task-change")
