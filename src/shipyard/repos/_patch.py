"""Putting a recorded change back into a working copy.

A change is kept as a patch against its base (``Change.patch``: git's format, binary
patches included). A repair attempt starts from the previous attempt's change, verification
checks the change on a fresh copy, and a replay re-applies a recorded one: each applies the
patch to a copy made at the same base. The copy's ``.git`` and the repository are never
touched: git applies it to the working tree with Shipyard's own git folder (``git apply``
without ``--index``: the patch carries full blob ids, so a binary or a changed file is checked
against what it was made from).
"""

from __future__ import annotations

from shipyard.errors import StateError, ToolError
from shipyard.repos._git import git, git_env
from shipyard.repos._workcopy import WorkingCopy

__all__ = ["apply_patch"]


def apply_patch(copy: WorkingCopy, patch: str) -> None:
    """Apply ``patch`` (made against ``copy.base``) to the copy's working tree; a patch that
    does not apply is a StateError naming the copy (the copy is then as it was)."""
    if not patch.strip():
        return
    try:
        # From inside the tree: run elsewhere, `git apply` skips every path silently.
        git(
            [
                f"--git-dir={copy.git_dir}",
                f"--work-tree={copy.path}",
                "apply",
                "--binary",
                "--whitespace=nowarn",
                "-",
            ],
            cwd=copy.path,
            env=git_env(),
            stdin=patch.encode("utf-8", "surrogateescape"),
            what=f"repository {copy.repo!r}: working copy {copy.key}",
        )
    except ToolError as exc:
        raise StateError(
            f"repository {copy.repo!r}: the recorded change does not apply to "
            f"{copy.base[:12]}: {exc.message}",
            hint="the base or the recorded patch changed; start the change again",
        ) from exc
