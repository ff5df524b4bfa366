"""``shipyard init`` makes a project every other command accepts."""

from __future__ import annotations

from pathlib import Path

from support import run_cli


def test_init_writes_a_starter_the_other_commands_accept(tmp_path: Path) -> None:
    root = tmp_path / "new-shop"
    made = run_cli(root, "init", str(root))
    assert made.returncode == 0, made.stderr
    assert (root / "shipyard.toml").is_file()
    for command in (["status"], ["budget"], ["list"]):
        done = run_cli(root, *command)
        assert done.returncode == 0, (command, done.stderr)
    again = run_cli(root, "init", str(root))  # a second run keeps the file and succeeds
    assert again.returncode == 0, again.stderr
