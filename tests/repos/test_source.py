"""[repos.NAME]: its settings parse with clear errors, and at start a path that is not a git
repository or a base that is not one of its commits fails naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from repos_support import commit_all, open_source, run_git, write
from shipyard.config import RepoSettings, load_settings
from shipyard.errors import ConfigError, InputError
from shipyard.repos import (
    check_repo,
    check_repos,
    create_working_copy,
    is_remote,
    open_repo,
    resolve_base,
)


def settings(path: str, **more: object) -> RepoSettings:
    return RepoSettings.model_validate({"path": path, **more})


def test_repo_settings_parse_with_their_defaults(project: Path) -> None:
    (project / "shipyard.toml").write_text(
        '[repos.shop]\npath = "shop"\nsetup = ["pip", "install", "-e", ".[test]"]\n'
        '[repos.lib]\npath = "https://example.com/lib.git"\nsetup = [["uv", "sync"], '
        '["python", "-m", "compileall", "."]]\nmerge_to = "main"\nmerge = "merge-commit"\n'
    )
    repos = load_settings(project / "shipyard.toml").repos
    shop = repos["shop"]
    assert shop.setup == [["pip", "install", "-e", ".[test]"]]  # one argv is one command
    assert (shop.base, shop.domain, shop.test) == ("main", "code", ["python", "-m", "pytest"])
    assert (shop.merge_to, shop.lint, shop.typecheck, shop.index_url) == (None, None, None, "")
    assert shop.max_context_tokens == 12000
    assert repos["lib"].setup == [["uv", "sync"], ["python", "-m", "compileall", "."]]
    assert repos["lib"].merge == "merge-commit"
    assert all(field.description for field in RepoSettings.model_fields.values())


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('path = "shop"\nauthor = "nobody"', ["repos.shop.author", "Name <email>"]),
        ('path = "shop"\ntest = []', ["repos.shop.test", "argv"]),
        ('path = "shop"\nsetup = [["pip"], []]', ["repos.shop.setup", "argv"]),
        ('path = "shop"\nmerge = "rebase"', ["repos.shop.merge"]),
        ('path = "shop"\nindex_url = "ftp://x"', ["repos.shop.index_url", "https://"]),
        ('path = "shop"\nmax_context_tokens = 10', ["repos.shop.max_context_tokens"]),
        ('base = "main"', ["missing key 'repos.shop.path'"]),
        ('path = "shop"\nbranch = "x"', ["unknown key 'repos.shop.branch'"]),
    ],
)
def test_bad_repo_settings_name_the_key(project: Path, table: str, words: list[str]) -> None:
    (project / "shipyard.toml").write_text(f"[repos.shop]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(project / "shipyard.toml")
    for word in words:
        assert word in str(caught.value)


def test_a_repository_name_is_checked_like_other_names(project: Path) -> None:
    (project / "shipyard.toml").write_text('[repos.My_Shop]\npath = "shop"\n')
    with pytest.raises(ConfigError, match="key 'repos': name 'My_Shop' must be lowercase"):
        load_settings(project / "shipyard.toml")


def test_a_good_repository_passes_the_start_check(project: Path, make_repo) -> None:
    make_repo({"a.py": "x = 1\n"}, name="shop")
    check_repos({"shop": settings("shop")}, root=project)
    check_repo("shop", settings("shop", base="HEAD~0", merge_to="release/next"), root=project)


def test_a_path_that_is_missing_or_not_a_repository_names_repos_path(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        check_repo("shop", settings("nowhere"), root=project)
    assert "repos.shop.path" in caught.value.message and "does not exist" in caught.value.message
    (project / "plain").mkdir()
    with pytest.raises(ConfigError) as caught:
        check_repo("shop", settings("plain"), root=project)
    assert "repos.shop.path" in caught.value.message
    assert "not a git repository" in caught.value.message
    assert "git init" in caught.value.hint


def test_a_folder_inside_a_repository_is_not_taken_for_it(project: Path, make_repo) -> None:
    make_repo({"sub/a.py": "x = 1\n"}, name="shop")
    with pytest.raises(ConfigError) as caught:
        check_repo("shop", settings("shop/sub"), root=project)
    assert "repos.shop.path" in caught.value.message and "top folder" in caught.value.hint


def test_an_unknown_base_names_repos_base_and_the_branches(project: Path, make_repo) -> None:
    repo = make_repo({"a.py": "x = 1\n"}, name="shop")
    run_git(repo, "branch", "develop")
    with pytest.raises(ConfigError) as caught:
        check_repo("shop", settings("shop", base="trunk"), root=project)
    assert "repos.shop.base" in caught.value.message and "'trunk'" in caught.value.message
    assert "develop" in caught.value.hint and "main" in caught.value.hint
    with pytest.raises(ConfigError, match=r"repos\.shop\.base"):
        check_repo("shop", settings("shop", base="--all"), root=project)


def test_an_invalid_merge_to_branch_names_the_key(project: Path, make_repo) -> None:
    make_repo({"a.py": "x = 1\n"}, name="shop")
    with pytest.raises(ConfigError, match=r"repos\.shop\.merge_to"):
        check_repo("shop", settings("shop", merge_to="bad..name"), root=project)


def test_resolve_base_gives_commit_ids_and_refuses_unknown_refs(project: Path, make_repo) -> None:
    repo = make_repo({"a.py": "x = 1\n"})
    first = run_git(repo, "rev-parse", "HEAD").strip()
    write(repo, {"a.py": "x = 2\n"})
    second = commit_all(repo)
    source = open_source(project, repo)
    assert resolve_base(source) == second
    assert resolve_base(source, first[:10]) == first
    with pytest.raises(InputError) as caught:
        resolve_base(source, "no-such-branch")
    assert "shop" in caught.value.message and "main" in caught.value.hint


def test_urls_are_remote_and_folders_are_not() -> None:
    assert is_remote("https://github.com/o/r.git") and is_remote("git@github.com:o/r.git")
    assert is_remote("file:///srv/git/r.git") and is_remote("ssh://git@host/r")
    assert not is_remote("../shop") and not is_remote("/srv/shop") and not is_remote("shop")


def test_a_remote_is_mirrored_and_fetched_before_each_task(project: Path, make_repo) -> None:
    origin = make_repo({"a.py": "x = 1\n"}, name="origin")
    url = origin.resolve().as_uri()
    check_repo("lib", settings(url), root=project)
    with pytest.raises(ConfigError, match=r"repos\.lib\.base"):
        check_repo("lib", settings(url, base="trunk"), root=project)
    state = project / ".shipyard"
    source = open_repo("lib", settings(url), root=project, state_dir=state)
    assert source.remote and source.git_dir == (state / "repos/lib/mirror.git").resolve()
    first = resolve_base(source)
    write(origin, {"a.py": "x = 2\n"})
    second = commit_all(origin)
    assert second != first
    again = open_repo("lib", settings(url), root=project, state_dir=state)
    assert resolve_base(again) == second  # fetched before this task
    copy = create_working_copy(again, key="task-1", base=second)
    assert (copy.path / "a.py").read_text() == "x = 2\n"
    assert copy.borrowed == (source.objects_dir,)


def test_an_unreachable_remote_names_repos_path(project: Path) -> None:
    missing = (project / "gone.git").resolve().as_uri()
    with pytest.raises(ConfigError) as caught:
        check_repo("lib", settings(missing), root=project)
    assert "repos.lib.path" in caught.value.message and "cannot reach" in caught.value.message
