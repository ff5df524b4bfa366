"""Fixtures of the repository tests: real git repositories in a project folder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from repos_support import make_repository

MakeRepo = Callable[..., Path]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder (shipyard.toml beside the repositories)."""
    (tmp_path / "shipyard.toml").write_text("[project]\nname = 'test'\n")
    return tmp_path


@pytest.fixture
def make_repo(project: Path) -> MakeRepo:
    """``make_repo(files, name="repo")``: a git repository in the project folder holding
    ``files`` in one commit on main."""

    def make(files: Mapping[str, str | bytes], name: str = "repo") -> Path:
        return make_repository(project / name, files)

    return make
