"""The built-in ``repo-change`` job kind: a goal against one of the project's repositories.

Each ``[repos.NAME]`` gets its own kind, ``repo-change:NAME``, in the repository's domain and
released to its target ``repo:NAME``: no job folder is needed. Its inputs are the goal, the
base commit the change starts from (resolved when it is submitted, so every attempt and every
replay starts from the same tree), and optionally the tier that writes it. Its output is the
change itself (``change.json`` and ``change.patch``), which the verify stage checks with the
repository's own commands in the sandbox rather than with a job kind's check list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.config import RepoSettings
from shipyard.jobs._kind import EffectSpec, JobKind, ReleaseSpec
from shipyard.model import Risk

__all__ = [
    "CHANGE_FILES",
    "REPO_CHANGE",
    "is_repo_change",
    "repo_change_kind",
    "repo_of",
    "repo_target",
]

REPO_CHANGE = "repo-change"
"""The built-in job kind's name; a repository's kind is ``repo-change:NAME``."""

CHANGE_FILES = ("change.json", "change.patch")
"""A change's artifact: its summary (base, tree, files) and its patch against the base."""

_PROMPT = """\
{#- The prompt of a repository change. The repository's map and the files chosen for the
    goal come first, the goal last, so a model reads the code before the task. -#}
You are changing the git repository {{ inputs.repo }} to reach this goal.

{{ context }}

## The goal
{{ inputs.goal }}
{% if feedback %}
## The previous attempt did not pass; fix these findings
{% for f in feedback -%}
- [{{ f.rule }}]{% if f.location %} {{ f.location }}{% endif %}: {{ f.message }}
{% endfor %}
The previous attempt's changes are already applied to the files shown above: edit them
further rather than starting again.
{% endif %}
{% if recalled %}
## Notes from earlier work on this repository
{% for item in recalled -%}
- {{ item.text }}
{% endfor %}
{%- endif %}
## How to reply
{{ edit_format }}
"""


def repo_change_kind(
    name: str, settings: RepoSettings, *, root: Path, state_dir: Path | None = None
) -> JobKind:
    """The job kind of changes to ``[repos.NAME]``. A remote repository's released branch
    is pushed back to it by a ``git-push`` effect, from its mirror under ``state_dir``."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["repo", "goal", "base"],
        "properties": {
            "repo": {"const": name, "description": "the [repos.NAME] changed"},
            "goal": {
                "type": "string",
                "minLength": 1,
                "maxLength": 20000,
                "pattern": r"\S",
                "description": "what the change must achieve, in words",
            },
            "base": {
                "type": "string",
                "pattern": "^[0-9a-f]{40}([0-9a-f]{24})?$",
                "description": "the commit the change starts from",
            },
            "base_ref": {"type": "string", "description": "the ref the base was resolved from"},
            "tier": {"type": "string", "description": "the tier that writes it ('' : default)"},
        },
    }
    return JobKind(
        name=f"{REPO_CHANGE}:{name}",
        domain=settings.domain,
        folder=root,
        description=f"a change to the repository {name}, verified by its own tests",
        risk=Risk.MEDIUM,
        publish=False,
        input_key="repo",
        max_attempts=settings.max_attempts,
        tier=settings.tier,
        input_schema=schema,
        prompt_template=_PROMPT,
        outputs=dict.fromkeys(CHANGE_FILES, ""),
        checks=(),
        release=ReleaseSpec(target=repo_target(name), path=""),
        effects=_push(name, settings, state_dir or root / ".shipyard"),
    )


def _push(name: str, settings: RepoSettings, state_dir: Path) -> tuple[EffectSpec, ...]:
    if not settings.remote:
        return ()  # released into the repository itself
    options: dict[str, Any] = {
        "repository": str(state_dir / "repos" / name / "mirror.git"),
        "remote": settings.path,
        "branch": "shipyard/{{ task_id }}",
    }
    if settings.merge_to:
        options["merge_to"] = settings.merge_to
    return (EffectSpec(tool="git-push", options=options),)


def is_repo_change(kind: JobKind) -> bool:
    """True for the built-in kind of a repository's changes."""
    return kind.name.startswith(REPO_CHANGE + ":")


def repo_of(kind: JobKind) -> str:
    """The repository a ``repo-change:NAME`` kind changes."""
    return kind.name.removeprefix(REPO_CHANGE + ":")


def repo_target(name: str) -> str:
    """The release target of a repository's changes."""
    return f"repo:{name}"
