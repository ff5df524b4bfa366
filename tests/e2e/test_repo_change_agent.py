"""``shipyard change`` on a fresh project whose shipyard.toml has only [project], one
[repos.NAME] and a ``command`` tier (a real agent: a script) as the generate tier, as a user
runs it, on SQLite and PostgreSQL: a change whose tests pass waits for one approval by
anyone but the submitter and is then on ``shipyard/<task>``; one whose tests keep failing
ends ``failed`` with no branch. The agent's only way out is the egress proxy."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from repos_support import make_repository, run_git
from shipyard.sandbox import bwrap_available
from support import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not bwrap_available(), reason="the agent's egress needs bubblewrap"),
]

CALC = {
    "calc/__init__.py": "def add(a, b):\n    return a - b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}

AGENT = '''\
"""A coding agent: reads its goal, edits the working copy, tries the network."""
import os
import pathlib
import sys
import urllib.request

goal, attempt = os.environ["SHIPYARD_GOAL"], int(os.environ["SHIPYARD_ATTEMPT"])
print(f"attempt {attempt}: {goal}")
if attempt > 1:
    print("feedback:", pathlib.Path(os.environ["SHIPYARD_FEEDBACK"]).read_text()[:200])
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            print("reached", url, reply.status)
    except Exception as error:
        print("could not reach", url, error)
source = pathlib.Path("calc/__init__.py")
wrong = "WRONG" in goal or attempt == 1
source.write_text(source.read_text().replace("a - b", "a * b" if wrong else "a + b")
                  .replace("a * b", "a * b" if wrong else "a + b"))
'''


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    """Two loopback HTTP servers: the agent's egress allows the first, not the second."""
    made = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello) for _ in range(2)]
    for server in made:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield made[0].server_address[1], made[1].server_address[1]
    for server in made:
        server.shutdown()
        server.server_close()


def _project(tmp_path: Path, allowed: int, denied: int) -> tuple[Path, Path]:
    repo = make_repository(tmp_path / "calc", CALC)
    agent = tmp_path / "agent" / "agent.py"
    agent.parent.mkdir()
    agent.write_text(AGENT)
    root = tmp_path / "project"
    root.mkdir()
    argv = ["python3", str(agent), f"http://127.0.0.1:{allowed}/", f"http://127.0.0.1:{denied}/"]
    (root / "shipyard.toml").write_text(
        '[project]\nname = "fresh"\n\n'
        f'[repos.calc]\npath = "{repo}"\n\n'
        '[tiers.agent]\nprovider = "command"\n'
        f"argv = {json.dumps(argv)}\n"
        f'mounts = ["{agent.parent}"]\n'
        f'egress = ["127.0.0.1:{allowed}"]\ntimeout_seconds = 60\n\n'
        '[generate]\ntier = "agent"\n'
    )
    return root, repo


def _run(root: Path, *args: str) -> str:
    done = run_cli(root, *args, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _story(root: Path, task_id: str) -> dict:  # type: ignore[type-arg]
    return dict(json.loads(_run(root, "show", task_id, "--json")))


def test_an_agents_passing_change_waits_for_another_person_then_is_a_branch(
    tmp_path: Path, database: str, servers: tuple[int, int]
) -> None:
    allowed, denied = servers
    root, repo = _project(tmp_path, allowed, denied)
    task_id = json.loads(_run(root, "change", "calc", "fix add", "--as", "me", "--json"))["task"]
    _run(root, "worker", "--until-idle")

    story = _story(root, task_id)
    assert story["task"]["state"] == "waiting_approval"
    first, second = story["attempts"]
    assert (first["passed"], second["passed"]) == (False, True)
    assert (first["provider"], first["model"]) == ("command", "python3")
    assert second["change"]["facts"]["tests_passed"] == 1

    refused = run_cli(root, "approve", task_id, "--as", "me")
    assert refused.returncode != 0 and "submit" in refused.stderr
    assert not [b for b in run_git(repo, "branch").split() if b.startswith("shipyard/")]
    _run(root, "approve", task_id, "--as", "bob")
    _run(root, "worker", "--until-idle")
    assert _story(root, task_id)["task"]["state"] == "published"
    assert "a + b" in run_git(repo, "show", f"shipyard/{task_id}:calc/__init__.py")
    assert run_git(repo, "rev-list", "--count", f"main..shipyard/{task_id}").strip() == "1"


def test_the_agent_reaches_only_its_egress_hosts(
    tmp_path: Path, database: str, servers: tuple[int, int]
) -> None:
    allowed, denied = servers
    root, _ = _project(tmp_path, allowed, denied)
    task_id = json.loads(_run(root, "change", "calc", "fix add", "--json"))["task"]
    _run(root, "worker", "--until-idle")
    with_reply = run_cli(root, "show", task_id, "--json")
    story = json.loads(with_reply.stdout)
    steps = {(s["stage"], s["attempt"]): s for s in story["steps"]}
    assert ("generate", 1) in steps
    from shipyard.config import load_project
    from shipyard.service import Runtime, task_story

    rt = Runtime.open(load_project(root))
    try:
        reply = task_story(rt, task_id).attempts[0].reply
    finally:
        rt.close()
    assert f"reached http://127.0.0.1:{allowed}/ 200" in reply
    assert f"could not reach http://127.0.0.1:{denied}/" in reply
    assert f"egress: allowed 127.0.0.1:{allowed}" in reply
    assert f"egress: denied 127.0.0.1:{denied}" in reply


def test_an_agent_whose_tests_keep_failing_ends_failed_with_no_branch(
    tmp_path: Path, database: str, servers: tuple[int, int]
) -> None:
    root, repo = _project(tmp_path, *servers)
    task_id = json.loads(_run(root, "change", "calc", "WRONG on purpose", "--json"))["task"]
    _run(root, "worker", "--until-idle")
    story = _story(root, task_id)
    assert story["task"]["state"] == "failed"
    assert len(story["attempts"]) == 3
    assert not [b for b in run_git(repo, "branch").split() if b.startswith("shipyard/")]
