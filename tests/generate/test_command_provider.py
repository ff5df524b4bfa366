"""The command tier: real coding agents (scripts written here) run by the real sandbox on
real working copies of git repositories; what they leave changed is the attempt's change."""

from __future__ import annotations

import http.server
import json
import os
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from repos_support import copy_of, make_repository
from shipyard.config import RepoSettings, TierSettings
from shipyard.errors import ConfigError, MalformedReply, ProviderError, from_dict, to_dict
from shipyard.generate import CommandProvider, GenerationRequest
from shipyard.jobs import JobKind, repo_change_kind
from shipyard.model import Finding
from shipyard.repos import WorkingCopy, changes
from shipyard.sandbox import (
    BwrapBackend,
    Limits,
    Mount,
    ProcessBackend,
    SandboxBackend,
    bwrap_available,
    run_environment,
)

GOAL = "Make total() add the tax."
LIMITS = Limits(timeout_seconds=30, cpu_seconds=30, memory_mb=1024, max_output_bytes=200_000)
FILES = {
    "shop/prices.py": "def total(net):\n    return net\n",
    "README.md": "# shop\n",
    "old.txt": "to be removed\n",
}


@pytest.fixture(params=["process", "bwrap"])
def backend(request: pytest.FixtureRequest) -> Iterator[SandboxBackend]:
    if request.param == "process":
        yield ProcessBackend()
        return
    if not bwrap_available():
        pytest.skip("bubblewrap is not available")
    sandbox = BwrapBackend(pool_size=1)
    yield sandbox
    sandbox.close()


@pytest.fixture
def bwrap() -> Iterator[BwrapBackend]:
    if not bwrap_available():
        pytest.skip("bubblewrap is not available")
    sandbox = BwrapBackend(pool_size=1)
    yield sandbox
    sandbox.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "shipyard.toml").write_text("[project]\nname = 'test'\n")
    return folder


@pytest.fixture
def copy(project: Path) -> WorkingCopy:
    return copy_of(project, make_repository(project / "shop", FILES))


@pytest.fixture
def kind(project: Path) -> JobKind:
    return repo_change_kind("shop", RepoSettings(path="shop"), root=project)


def agent(project: Path, name: str, source: str) -> Path:
    """A coding agent: a script in the project's ``agents`` folder (which tiers mount)."""
    folder = project / "agents"
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(textwrap.dedent(source).lstrip())
    script.chmod(0o755)
    return script


def tier(argv: list[str], **settings: object) -> TierSettings:
    return TierSettings.model_validate(
        {"provider": "command", "argv": argv, "mounts": ["agents"], **settings}
    )


def provider(
    backend: SandboxBackend, project: Path, settings: TierSettings, **options: object
) -> CommandProvider:
    return CommandProvider(
        settings,
        backend=backend,
        limits=options.pop("limits", LIMITS),  # type: ignore[arg-type]
        root=project,
        **options,  # type: ignore[arg-type]
    )


def request_for(
    copy: WorkingCopy, kind: JobKind, *, attempt: int = 1, feedback: tuple[Finding, ...] = ()
) -> GenerationRequest:
    return GenerationRequest(
        task_id="task-1",
        kind=kind,
        inputs={"repo": "shop", "goal": GOAL, "base": copy.base},
        attempt=attempt,
        prompt="(the rendered prompt)",
        feedback=feedback,
        reply_format="edits",
        goal=GOAL,
        workdir=copy.path,
        mounts=tuple(Mount(source=path) for path in copy.borrowed),
    )


def changed(copy: WorkingCopy) -> dict[str, str]:
    return {file.path: file.status for file in changes(copy).files}


EDITOR = """
    import os, sys
    goal_file, attempt = sys.argv[1:]
    goal = open(goal_file).read().strip()
    assert goal == os.environ["SHIPYARD_GOAL"], (goal, os.environ["SHIPYARD_GOAL"])
    with open("shop/prices.py", "w") as handle:
        handle.write("def total(net):\\n    return round(net * 1.2, 2)\\n")
    print(f"attempt {attempt}: edited shop/prices.py for: {goal}")
"""


def test_an_agent_edits_the_working_copy_in_place(
    backend: SandboxBackend, project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    script = agent(project, "editor.py", EDITOR)
    command = provider(
        backend, project, tier([sys.executable, str(script), "{goal_file}", "{attempt}"])
    )

    generation = command.generate(request_for(copy, kind))

    assert generation.files == {}
    assert generation.provider == "command"
    assert generation.model == Path(sys.executable).name
    assert generation.finish_reason == "exit 0"
    assert f"attempt 1: edited shop/prices.py for: {GOAL}" in generation.reply
    assert "round(net * 1.2, 2)" in (copy.path / "shop/prices.py").read_text()
    assert changed(copy) == {"shop/prices.py": "modified"}


def test_an_agent_adds_and_deletes_files_and_uses_git_in_the_copy(
    backend: SandboxBackend, project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    script = agent(
        project,
        "shuffle.sh",
        """
        #!/bin/sh
        set -e
        mkdir -p shop/tax
        printf 'RATE = 0.2\\n' > shop/tax/__init__.py
        rm old.txt
        git status --porcelain
        echo "goal: $1"
        """,
    )
    command = provider(backend, project, tier([str(script), "{goal}"]))

    generation = command.generate(request_for(copy, kind))

    assert generation.model == "shuffle.sh"
    assert " D old.txt" in generation.reply and "?? shop/tax/" in generation.reply
    assert f"goal: {GOAL}" in generation.reply
    assert changed(copy) == {"old.txt": "deleted", "shop/tax/__init__.py": "added"}


FIXER = """
    import json, os, sys
    feedback = os.environ.get("SHIPYARD_FEEDBACK")
    print("argv feedback:", repr(sys.argv[1]), "attempt:", os.environ["SHIPYARD_ATTEMPT"])
    if feedback is None:
        with open("shop/prices.py", "w") as handle:
            handle.write("def total(net):\\n    return net * 1.2\\n")
        sys.exit(0)
    assert sys.argv[1] == feedback
    print(open(feedback).read())
    findings = json.load(open(feedback + ".json"))["findings"]
    digits = int(findings[0]["message"].rsplit(" ", 1)[1])
    with open(findings[0]["file"], "w") as handle:
        handle.write(f"def total(net):\\n    return round(net * 1.2, {digits})\\n")
"""


def test_a_repair_attempt_reads_the_findings_and_acts_on_them(
    backend: SandboxBackend, project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    script = agent(project, "fixer.py", FIXER)
    command = provider(backend, project, tier([sys.executable, str(script), "{feedback_file}"]))

    first = command.generate(request_for(copy, kind))
    assert "argv feedback: '' attempt: 1" in first.reply
    assert (copy.path / "shop/prices.py").read_text().endswith("return net * 1.2\n")

    finding = Finding(
        rule="pytest.failed",
        message="test_total: total(10.005) must be rounded to 2",
        file="shop/prices.py",
        line=2,
    )
    second = command.generate(request_for(copy, kind, attempt=2, feedback=(finding,)))

    assert "attempt: 2" in second.reply
    assert "Attempt 1 was checked and failed" in second.reply
    assert "- error pytest.failed shop/prices.py:2: test_total: total(10.005)" in second.reply
    assert (copy.path / "shop/prices.py").read_text().endswith("return round(net * 1.2, 2)\n")
    assert changed(copy) == {"shop/prices.py": "modified"}


def test_an_agent_that_exits_non_zero_is_a_failed_attempt_with_its_output(
    backend: SandboxBackend, project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    script = agent(
        project,
        "quits.py",
        """
        import sys
        print("reading the repository")
        print("error: the model refused: context too long", file=sys.stderr)
        sys.exit(3)
        """,
    )
    command = provider(backend, project, tier([sys.executable, str(script)]))

    with pytest.raises(MalformedReply) as caught:
        command.generate(request_for(copy, kind))

    error = caught.value
    assert "exited with status 3" in error.message
    assert "error: the model refused: context too long" in error.message
    assert error.details["provider"] == "command"
    assert error.details["finish_reason"] == "exit 3"
    assert "reading the repository" in error.details["reply"]
    assert "SHIPYARD_FEEDBACK" in error.hint
    assert from_dict(to_dict(error)).details == error.details


def test_an_agent_that_hangs_is_stopped_at_the_tiers_timeout(
    backend: SandboxBackend, project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    script = agent(
        project,
        "hangs.py",
        """
        import threading
        print("thinking...", flush=True)
        threading.Event().wait()
        """,
    )
    command = provider(backend, project, tier([sys.executable, str(script)], timeout_seconds=1))

    with pytest.raises(MalformedReply) as caught:
        command.generate(request_for(copy, kind))

    assert "ran out of time (the tier's timeout_seconds, 1 s)" in caught.value.message
    assert "thinking..." in caught.value.message
    assert caught.value.details["finish_reason"] == "killed: timeout"


def test_an_agent_that_prints_endlessly_is_stopped_by_the_output_cap(
    backend: SandboxBackend, project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    script = agent(
        project,
        "chatty.py",
        """
        import sys
        line = "la" * 500 + "\\n"
        while True:
            sys.stdout.write(line)
        """,
    )
    command = provider(backend, project, tier([sys.executable, str(script)]))

    with pytest.raises(MalformedReply) as caught:
        command.generate(request_for(copy, kind))

    assert "printed more than the sandbox keeps (200000 bytes)" in caught.value.message
    assert caught.value.details["finish_reason"] == "killed: output"
    reply = caught.value.details["reply"]
    assert reply.startswith("[... ") and len(reply) < 21_000


def test_a_program_that_cannot_be_started_means_the_tier_cannot_serve(
    backend: SandboxBackend, project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    agent(project, "unused.py", "print('never run')\n")
    command = provider(backend, project, tier([str(project / "agents" / "missing-agent")]))

    with pytest.raises(ProviderError) as caught:
        command.generate(request_for(copy, kind))

    assert not isinstance(caught.value, MalformedReply)
    assert "could not be started" in caught.value.message
    assert "mounts" in caught.value.hint


def test_an_agent_left_unmounted_cannot_be_started_in_bwrap(
    bwrap: BwrapBackend, project: Path, copy: WorkingCopy, kind: JobKind, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = outside / "agent.sh"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    agent(project, "unused.py", "")
    command = provider(bwrap, project, tier([str(script)]))

    with pytest.raises(ProviderError) as caught:
        command.generate(request_for(copy, kind))

    assert not isinstance(caught.value, MalformedReply)
    assert "mounts" in caught.value.hint


ENVIRONMENT = """
    import json, os, pathlib
    home = pathlib.Path(os.environ["HOME"])
    (home / ".agent-cache").write_text("cached")
    print(json.dumps(dict(os.environ)))
"""


def test_only_the_listed_variables_reach_the_agent(
    backend: SandboxBackend,
    project: Path,
    copy: WorkingCopy,
    kind: JobKind,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_API_KEY", "from-the-environment")
    monkeypatch.setenv("SHIPYARD_UNLISTED_SECRET", "must-not-leak")
    script = agent(project, "env.py", ENVIRONMENT)
    settings = tier([sys.executable, str(script)], env=["AGENT_API_KEY", "AGENT_REGION"])
    command = provider(backend, project, settings, secrets={"AGENT_REGION": "from-secrets"})

    generation = command.generate(request_for(copy, kind))

    seen = json.loads(generation.reply.strip().splitlines()[-1])
    assert seen["AGENT_API_KEY"] == "from-the-environment"
    assert seen["AGENT_REGION"] == "from-secrets"
    assert seen["SHIPYARD_GOAL"] == GOAL and seen["SHIPYARD_ATTEMPT"] == "1"
    assert "SHIPYARD_FEEDBACK" not in seen
    assert "must-not-leak" not in generation.reply
    ours = {"AGENT_API_KEY", "AGENT_REGION", "SHIPYARD_GOAL", "SHIPYARD_ATTEMPT"}
    assert set(seen) <= set(run_environment(home="", tmpdir="")) | ours
    assert not Path(seen["TMPDIR"]).is_relative_to(copy.path), "temporary files stay out"
    home = Path(seen["HOME"])
    assert home != Path.home() and not str(home).startswith(str(copy.path))
    if not backend.isolated:
        assert not home.exists(), "the agent's home folder is discarded after the run"
    assert changed(copy) == {}, "the home folder is not part of the change"


def test_a_request_without_a_working_copy_is_not_served(
    project: Path, copy: WorkingCopy, kind: JobKind
) -> None:
    script = agent(project, "editor.py", EDITOR)
    command = provider(ProcessBackend(), project, tier([sys.executable, str(script)]))
    request = request_for(copy, kind)
    plain = GenerationRequest(
        task_id=request.task_id,
        kind=request.kind,
        inputs=request.inputs,
        attempt=1,
        prompt=request.prompt,
    )

    with pytest.raises(ProviderError) as caught:
        command.generate(plain)

    assert "serves repository changes only" in caught.value.message
    assert "model or template tier" in caught.value.hint


def test_a_mount_that_does_not_exist_is_a_config_error(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        provider(ProcessBackend(), project, tier(["aider"], mounts=["~/no-such-agent-install"]))
    assert "key 'mounts'" in caught.value.message
    assert "no-such-agent-install" in caught.value.message


def test_an_unknown_placeholder_is_a_config_error(project: Path) -> None:
    agent(project, "unused.py", "")
    with pytest.raises(ConfigError) as caught:
        provider(ProcessBackend(), project, tier(["aider", "--message-file", "{goal_fle}"]))
    assert "{goal_fle}" in caught.value.message
    assert "{goal_file}" in caught.value.hint


ESCAPE = """
    import os, sys
    tried = {
        "mounted": os.path.join(sys.argv[1], "planted.txt"),
        "host-tmp": sys.argv[2],
        "goal-folder": os.path.join(os.path.dirname(sys.argv[3]), "planted.txt"),
        "object-store": os.path.join(sys.argv[4], "planted"),
    }
    for what, path in tried.items():
        try:
            with open(path, "w") as handle:
                handle.write("escaped")
            print(what, "written")
        except OSError as exc:
            print(what, "refused:", exc.strerror)
    open("inside.txt", "w").write("fine")
"""


def test_an_agent_cannot_write_outside_its_working_copy(
    bwrap: BwrapBackend, project: Path, copy: WorkingCopy, kind: JobKind, tmp_path: Path
) -> None:
    script = agent(project, "escape.py", ESCAPE)
    host_tmp = Path("/tmp") / f"shipyard-escape-{os.getpid()}-{tmp_path.name}"
    assert copy.borrowed, "the copy reads the repository's objects (mounted read-only)"
    store = copy.borrowed[0]
    command = provider(
        bwrap,
        project,
        tier(
            [
                sys.executable,
                str(script),
                str(script.parent),
                str(host_tmp),
                "{goal_file}",
                str(store),
            ]
        ),
    )

    generation = command.generate(request_for(copy, kind))

    assert not (script.parent / "planted.txt").exists()
    assert not host_tmp.exists()
    assert not (store / "planted").exists()
    assert "mounted refused" in generation.reply
    assert "goal-folder refused" in generation.reply
    assert "object-store refused" in generation.reply
    assert changed(copy) == {"inside.txt": "added"}


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.server.server_address[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def two_servers() -> Iterator[tuple[int, int]]:
    """Two HTTP servers on loopback: the first is listed in the tier's egress, the second not."""
    running = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello) for _ in "ab"]
    for server in running:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield running[0].server_address[1], running[1].server_address[1]
    for server in running:
        server.shutdown()
        server.server_close()


FETCHER = """
    import sys, urllib.error, urllib.request
    for port in sys.argv[1:]:
        try:
            reply = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
            print(port, "got:", reply.read().decode())
        except urllib.error.HTTPError as exc:
            print(port, "refused:", exc.code)
"""


def test_the_agent_reaches_only_its_egress_hosts_and_the_reply_records_its_tries(
    backend: SandboxBackend,
    project: Path,
    copy: WorkingCopy,
    kind: JobKind,
    two_servers: tuple[int, int],
) -> None:
    listed, unlisted = two_servers
    script = agent(project, "fetch.py", FETCHER)
    settings = tier(
        [sys.executable, str(script), str(listed), str(unlisted)],
        egress=[f"127.0.0.1:{listed}"],
    )

    generation = provider(backend, project, settings).generate(request_for(copy, kind))

    assert f"{listed} got: hello from {listed}" in generation.reply
    assert f"{unlisted} refused: 403" in generation.reply
    assert generation.reply.endswith(
        f"egress: allowed 127.0.0.1:{listed}\negress: denied 127.0.0.1:{unlisted}\n"
    )
