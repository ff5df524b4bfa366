"""Repositories: the stage library behind repository changes.

A ``[repos.NAME]`` table names an existing git repository. Before a task, the repository
is opened (a remote one is fetched into its mirror) and a working copy is made at the base
commit; an environment is built by the repository's ``setup`` (or taken from the cache);
the context a model is sent is built from the repository's map and the goal; a model's
reply is parsed into edits and applied to the working copy (a coding agent changes it
directly); the change is computed against the base; and the import guard checks what the
change imports. Each piece takes what it needs as arguments: memory, the sandbox backend
and the records are the caller's.

Typical use, in order::

    check_repo(name, settings, root=project.root)                      # at start
    source = open_repo(name, settings, root=project.root, state_dir=project.state_dir)
    copy = create_working_copy(source, key=task_id, base=resolve_base(source, ref))
    build = prepare_environment(copy, settings, envs_dir=state_dir / "envs",
                                backend=backend, limits=limits)
    context = build_context(goal, map_working_copy(copy), copy.path,
                            max_tokens=settings.max_context_tokens, touched=recent_paths)
    parsed = parse_edits(reply); applied = apply_edits(copy.path, parsed.edits)
    change = changes(copy, limits=ChangeLimits.from_settings(settings))
    report = guard_imports(copy, change, index=PackageIndex(resolve_index_url(
        settings.index_url)), environment=build.environment)
"""

from __future__ import annotations

from shipyard.repos._apply import AppliedEdits, apply_edits
from shipyard.repos._changes import Change, ChangeLimits, FileChange, changes
from shipyard.repos._context import (
    CHARS_PER_TOKEN,
    Context,
    ContextFile,
    build_context,
    estimate_tokens,
    terms,
)
from shipyard.repos._edits import EDIT_FORMAT, Edit, EditProblem, ParsedEdits, parse_edits
from shipyard.repos._environment import (
    DEPENDENCY_FILES,
    ENV_MOUNT,
    Environment,
    EnvironmentBuild,
    dependency_files,
    environment_digest,
    prepare_environment,
)
from shipyard.repos._git import git_env
from shipyard.repos._imports import (
    AddedImport,
    ImportReport,
    added_imports,
    check_imports,
    declared_dependencies,
    guard_imports,
    own_modules,
    source_roots,
)
from shipyard.repos._index import DEFAULT_INDEX, PackageIndex, normalize_name, resolve_index_url
from shipyard.repos._map import MappedFile, RepoMap, Symbol, map_files, map_working_copy
from shipyard.repos._patch import apply_patch
from shipyard.repos._source import (
    RepoSource,
    check_repo,
    check_repos,
    is_remote,
    open_repo,
    resolve_base,
)
from shipyard.repos._view import DiffLine, FileDiff, file_diffs
from shipyard.repos._workcopy import (
    WorkingCopy,
    base_files,
    create_working_copy,
    read_base_file,
    remove_working_copy,
    working_files,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_INDEX",
    "DEPENDENCY_FILES",
    "EDIT_FORMAT",
    "ENV_MOUNT",
    "AddedImport",
    "AppliedEdits",
    "Change",
    "ChangeLimits",
    "Context",
    "ContextFile",
    "DiffLine",
    "Edit",
    "EditProblem",
    "Environment",
    "EnvironmentBuild",
    "FileChange",
    "FileDiff",
    "ImportReport",
    "MappedFile",
    "PackageIndex",
    "ParsedEdits",
    "RepoMap",
    "RepoSource",
    "Symbol",
    "WorkingCopy",
    "added_imports",
    "apply_edits",
    "apply_patch",
    "base_files",
    "build_context",
    "changes",
    "check_imports",
    "check_repo",
    "check_repos",
    "create_working_copy",
    "declared_dependencies",
    "dependency_files",
    "environment_digest",
    "estimate_tokens",
    "file_diffs",
    "git_env",
    "guard_imports",
    "is_remote",
    "map_files",
    "map_working_copy",
    "normalize_name",
    "open_repo",
    "own_modules",
    "parse_edits",
    "prepare_environment",
    "read_base_file",
    "remove_working_copy",
    "resolve_base",
    "resolve_index_url",
    "source_roots",
    "terms",
    "working_files",
]
