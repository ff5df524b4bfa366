"""The storefront kept off the console's origin, in Chromium: a script on a published page,
visited by an approver signed in to the console in the same browser, can neither read a
console page or the API (fetch with the approver's cookie, framed, opaque) nor show the
signed-in approval page in a frame; and the console's own pages run under their strict
Content-Security-Policy without a single violation.

The server is composed as ``shipyard serve`` composes it (the gateway on one port, the API and
console on another: ``serving_both`` in tests/server/test_security.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, expect

from server.test_security import serving_both
from shipyard.jobs import BatchRow
from shipyard.release import StaticSite
from shipyard.server import create_token
from shipyard.service import Runtime, submit
from support import PRODUCT, SETTLED, wait_for_state

Shot = Callable[[Page, str], Path]

ATTACK = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Mug</title></head>
<body><h1>A mug</h1><pre id="out">running</pre>
<script>
const ADMIN = %(admin)s, TASK = %(task)s;
const found = {};
async function read(name, url, options) {
  try {
    const answer = await fetch(url, options);
    const text = await answer.text();
    found[name] = text.includes("Sign out") || text.includes(TASK) ? "READ" : "opaque";
  } catch (error) {
    found[name] = "blocked";
  }
}
async function frame() {
  const frame = document.createElement("iframe");
  frame.src = ADMIN + "/console/approvals/" + TASK;
  document.body.appendChild(frame);
  await new Promise((done) => { frame.onload = done; setTimeout(done, 3000); });
  try {
    const text = frame.contentDocument ? frame.contentDocument.body.innerText : "";
    found.frame = text.includes("Sign out") ? "READ" : "unreadable";
  } catch (error) {
    found.frame = "unreadable";
  }
}
(async () => {
  await read("console", ADMIN + "/console/approvals/" + TASK, {credentials: "include"});
  const opaque = {credentials: "include", mode: "no-cors"};
  await read("console-no-cors", ADMIN + "/console/approvals", opaque);
  await read("api", ADMIN + "/api/v1/tasks", {credentials: "include"});
  await frame();
  document.getElementById("out").textContent = JSON.stringify(found);
})();
</script></body></html>
"""


def _in_thread(call: Callable[[], object]) -> object:
    """DBOS's blocking calls, off the thread Playwright's event loop is marked running on."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def test_a_script_on_a_published_page_cannot_read_or_frame_the_console(
    page: Page, rt: Runtime, shot: Shot
) -> None:
    rows = [BatchRow(where="origin test", data=PRODUCT)]
    result = _in_thread(lambda: submit(rt, rt.jobs.get("landing-page"), rows, submitted_by="alice"))
    [task_id] = result.submitted  # type: ignore[attr-defined]
    assert _in_thread(lambda: wait_for_state(rt, task_id, SETTLED)) == "waiting_approval"
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text and "/console" in page.url:
            violations.append(message.text)

    page.on("console", on_console)
    with serving_both(rt) as live:
        site = rt.target("storefront-site")
        assert isinstance(site, StaticSite)
        attack = ATTACK % {"admin": json.dumps(live.admin), "task": json.dumps(task_id)}
        site.publish(key="t-attack", path="products/evil", files={"index.html": attack.encode()})

        # An approver signs in to the console and looks at the waiting task ...
        page.goto(live.admin + "/console/login")
        page.fill("input[name=token]", create_token(rt, "bob", "approver", actor="ops")[1])
        page.click("button[type=submit]")
        expect(page).to_have_url(live.admin + "/console/")
        page.goto(f"{live.admin}/console/tasks/{task_id}")
        page.goto(f"{live.admin}/console/approvals/{task_id}")
        expect(page.get_by_role("button", name="Approve")).to_be_visible()
        assert violations == [], violations  # the console runs under its own CSP

        # ... then visits the storefront, where a published page runs its script.
        page.goto(live.site + "/products/evil/")
        expect(page.locator("#out")).not_to_have_text("running", timeout=15_000)
        found = json.loads(page.locator("#out").inner_text())
        shot(page, "storefront-cannot-read-console")
        assert found == {
            "console": "blocked",
            "console-no-cors": found["console-no-cors"],
            "api": "blocked",
            "frame": "unreadable",
        }, found
        assert found["console-no-cors"] in ("blocked", "opaque")
        # The framed approval page never rendered: frame-ancestors 'none'.
        for frame in page.frames[1:]:
            assert "Approve" not in frame.content(), frame.url
