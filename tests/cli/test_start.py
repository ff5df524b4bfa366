"""Starting the command line: each command imports what it uses and nothing more.

``shipyard --help`` and ``--version`` import none of Shipyard's layers; ``status``, ``list``
and ``show`` read the records without the orchestrator, DBOS or the stages; ``sandbox exec``
starts bubblewrap for its one run without a database or a warm pool, and still isolates it.
What these cost in time is measured by ``benchmarks/cli_start.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import typer.main

from shipyard.cli._app import COMMANDS, app
from shipyard.config import Project
from shipyard.sandbox import bwrap_available
from support import as_person, run_cli

HEAVY = {
    "alembic",
    "cedarpy",
    "dbos",
    "fastapi",
    "jinja2",
    "numpy",
    "opentelemetry",
    "pydantic",
    "sqlalchemy",
    "uvicorn",
}
"""Libraries that --help and --version must not import (each costs tens of milliseconds or
more at every start)."""

_CLI = {"shipyard.cli", "shipyard.cli._app", "shipyard.cli._lazy"}
"""The command line's own entry: what any start imports of Shipyard."""

_PROBE = """
import json, sys
out, args = sys.argv[1], json.loads(sys.argv[2])
sys.argv = ["shipyard", *args]
try:
    from shipyard.cli import main
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
finally:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
sys.exit(code)
"""


def run_probed(
    tmp_path: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``shipyard ARGS`` in a fresh interpreter; what it did, and every module it
    imported."""
    listing = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(listing), json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=180,
        check=False,
    )
    return done, set(json.loads(listing.read_text()))


def _tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("args", [["--help"], ["--version"], []], ids=["help", "version", "bare"])
def test_help_and_version_import_none_of_shipyards_layers(tmp_path: Path, args: list[str]) -> None:
    done, modules = run_probed(tmp_path, *args)
    assert done.returncode in (0, 2), done.stderr  # bare: the help, with a usage status
    shown = done.stdout + done.stderr
    assert ("shipyard 0." in shown) if args == ["--version"] else ("status" in shown)
    assert _tops(modules) & HEAVY == set()
    ours = {m for m in modules if m.split(".")[0] == "shipyard"}
    assert ours <= {"shipyard", *_CLI}


def test_the_help_lists_every_command_under_its_own_summary() -> None:
    """The summaries kept beside the names are each command's own help, first paragraph."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    names = [entry.name for entry in COMMANDS]
    assert len(set(names)) == len(names)
    for entry in COMMANDS:
        command = root.get_command(None, entry.name)  # type: ignore[arg-type]
        assert command is not None and command.name == entry.name
        assert command.help is not None, entry.name
        first = command.help.split("\n\n")[0]
        assert entry.summary == " ".join(first.split()), entry.name


def test_every_command_answers_its_own_help(tmp_path: Path) -> None:
    listed, _ = run_probed(tmp_path, "--help")
    for entry in COMMANDS:
        assert f" {entry.name} " in listed.stdout, entry.name
    for entry in COMMANDS:
        done = subprocess.run(
            [sys.executable, "-m", "shipyard", entry.name, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (entry.name, done.stderr)
        assert f"shipyard {entry.name}" in done.stdout, entry.name


def test_a_misspelt_command_is_answered_with_the_ones_meant(tmp_path: Path) -> None:
    done, modules = run_probed(tmp_path, "stauts")
    assert done.returncode == 2
    assert "No such command 'stauts'" in done.stderr and "'status'" in done.stderr
    assert {m for m in modules if m.startswith("shipyard.")} <= _CLI


def test_status_list_and_show_read_the_records_alone(project: Project, tmp_path: Path) -> None:
    root = project.root
    submitted = run_cli(
        root, "submit", "landing-page", "--batch", str(root / "products.csv"), "--as", "shop-owner",
        env=as_person(root, "shop-owner"),
    )  # fmt: skip
    assert submitted.returncode == 3, submitted.stderr  # two rows are bad on purpose

    listed, list_modules = run_probed(tmp_path, "-C", str(root), "list", "--json")
    assert listed.returncode == 0, listed.stderr
    tasks = json.loads(listed.stdout)
    assert len(tasks) == 20
    status, status_modules = run_probed(tmp_path, "-C", str(root), "status", "--json")
    assert status.returncode == 0, status.stderr
    answer = json.loads(status.stdout)
    assert answer["states"] == dict(Counter(t["state"] for t in tasks))
    assert answer["waiting_approval"] == []
    shown, show_modules = run_probed(tmp_path, "-C", str(root), "show", tasks[0]["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["task"]["id"] == tasks[0]["id"]

    for modules in (list_modules, status_modules, show_modules):
        assert _tops(modules) & {"alembic", "cedarpy", "dbos", "fastapi", "uvicorn"} == set()
        assert not any(m.startswith("shipyard.orchestrator") for m in modules)


_SNOOP = """
import os, socket, sys
print(os.getcwd())
print("token:", os.environ.get("SNOOP_TOKEN", "(none)"))
try:
    print("secret:", open(sys.argv[1]).read())
except OSError as exc:
    print("secret: unreadable", type(exc).__name__)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network: reached")
except OSError:
    print("network: none")
open("left-behind.txt", "w").write("x")
"""


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available")
def test_sandbox_exec_runs_one_command_isolated_without_a_database(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.py").write_text(_SNOOP)
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    done, modules = run_probed(
        tmp_path, "sandbox", "exec", "--workdir", str(work), "--", "python", "a.py", str(secret),
        env={"SNOOP_TOKEN": "from-the-host"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["exit_code"], result["backend"], result["killed_by"]) == (0, "bwrap", None)
    assert result["stdout"].splitlines() == [
        "/sandbox/work",
        "token: (none)",
        "secret: unreadable FileNotFoundError",
        "network: none",
    ]
    assert sorted(p.name for p in work.iterdir()) == ["a.py"]  # a copy was written, not this
    assert _tops(modules) & {"alembic", "dbos", "fastapi", "sqlalchemy", "cedarpy"} == set()


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available")
def test_sandbox_exec_ends_a_run_at_its_time_limit(tmp_path: Path) -> None:
    done, _ = run_probed(
        tmp_path, "sandbox", "exec", "--workdir", str(tmp_path), "--timeout", "1",
        "--", "python", "-c", "while True: pass",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["timed_out"] and result["killed_by"] == "timeout"


def test_check_runs_the_checks_on_a_folder_and_exits_with_the_verdict(tmp_path: Path) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "mod.py").write_text("def add(a: int, b: int) -> int:\n    return a - b\n")
    (folder / "test_mod.py").write_text(
        "from mod import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"
    )
    done, _ = run_probed(tmp_path, "check", str(folder), "--checks", "compile,pytest", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(r["check"], r["passed"]) for r in report["results"]] == [
        ("compile", True),
        ("pytest", False),
    ]
