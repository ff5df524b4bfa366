"""Submitting a repository change: a goal against one of the project's ``[repos]``.

The goal becomes one task of the repository's built-in ``repo-change:NAME`` job kind. The
base (a branch, tag or commit; default the repository's ``base``) is resolved to a commit
here, at the door, after fetching a remote repository: every attempt, its verification and
any replay then start from exactly that tree, whatever the branch does meanwhile.
"""

from __future__ import annotations

from shipyard.errors import InputError, NotFound
from shipyard.jobs import REPO_CHANGE, BatchRow, validate_inputs
from shipyard.orchestrator import Runtime
from shipyard.repos import open_repo, resolve_base
from shipyard.service._submit import SubmitResult, submit

__all__ = ["submit_change"]

_RESERVED_TIERS = ("auto", "human")


def submit_change(
    rt: Runtime,
    repo: str,
    goal: str,
    *,
    submitted_by: str,
    base: str | None = None,
    tier: str | None = None,
    principal: str = "",
    idempotency_key: str = "",
    again: bool = False,
) -> SubmitResult:
    """Submit ``goal`` as a change to ``[repos.REPO]``; the task's id is the result's only
    ``submitted`` entry. An unknown repository or tier, an empty goal or a base that is not a
    branch, tag or commit of the repository is an error naming it, and nothing is recorded."""
    settings = rt.project.settings
    found = settings.repos.get(repo)
    if found is None:
        raise NotFound(
            f"no repository named {repo!r} in {rt.project.config_path}",
            hint="declared repositories: "
            + (", ".join(sorted(settings.repos)) or "(none)")
            + "; add a [repos.NAME] table with its path",
        )
    if not goal.strip():
        raise InputError("the goal is empty", hint='say what the change must do, e.g. "fix ..."')
    if tier and tier not in settings.tiers and tier not in _RESERVED_TIERS:
        raise InputError(
            f"no tier named {tier!r}",
            hint="declared tiers: " + ", ".join([*settings.tiers, *_RESERVED_TIERS]),
        )
    source = open_repo(repo, found, root=rt.project.root, state_dir=rt.project.state_dir)
    commit = resolve_base(source, base or None)
    inputs: dict[str, object] = {
        "repo": repo,
        "goal": goal.strip(),
        "base": commit,
        "base_ref": base or found.base,
    }
    if tier:
        inputs["tier"] = tier
    kind = rt.jobs.get(f"{REPO_CHANGE}:{repo}")
    validate_inputs(kind, inputs, where="the change")  # refused here: nothing is recorded
    return submit(
        rt,
        kind,
        [BatchRow(where="change", data=inputs)],
        submitted_by=submitted_by,
        principal=principal,
        idempotency_key=idempotency_key,
        again=again,
    )
