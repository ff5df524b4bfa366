"""API keys from the environment or the project's secrets file; never from shipyard.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import Project, TierSettings, load_project
from shipyard.errors import ConfigError
from shipyard.generate import read_secrets
from shipyard.generate.providers.anthropic import AnthropicProvider
from shipyard.service import Runtime


def secrets_file(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "secrets.env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_file_holds_name_value_lines_with_comments_export_and_quotes(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "# keys\nexport A_KEY=one\nB_KEY = 'two words'\n\nC_KEY=\"3\"\n")
    assert read_secrets(path) == {"A_KEY": "one", "B_KEY": "two words", "C_KEY": "3"}
    assert read_secrets(None) == {}


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "A_KEY=one\n", mode=0o644)
    with pytest.raises(ConfigError, match="open to other users") as caught:
        read_secrets(path)
    assert caught.value.hint == f"chmod 600 {path}"


def test_a_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "A_KEY=one\nnot a variable\n")
    with pytest.raises(ConfigError, match=r"secrets.env:2: expected NAME=VALUE"):
        read_secrets(path)


def test_a_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_secrets(tmp_path / "absent.env")


def test_the_environment_wins_over_the_file_and_the_file_serves_what_it_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = TierSettings(provider="anthropic", model="m", api_key_env="SHIPYARD_TEST_KEY")
    monkeypatch.delenv("SHIPYARD_TEST_KEY", raising=False)
    from_file = AnthropicProvider(settings, secrets={"SHIPYARD_TEST_KEY": "sk-file"})
    assert from_file._key == "sk-file"
    monkeypatch.setenv("SHIPYARD_TEST_KEY", "sk-env")
    from_env = AnthropicProvider(settings, secrets={"SHIPYARD_TEST_KEY": "sk-file"})
    assert from_env._key == "sk-env"


def test_a_worker_reads_keys_from_the_projects_secrets_file(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project.root
    monkeypatch.delenv("SHIPYARD_TEST_KEY", raising=False)
    config = root / "shipyard.toml"
    text = config.read_text().replace(
        'tier = "template"\n', 'tier = "template"\nsecrets_file = "keys.env"\n', 1
    )
    config.write_text(
        text + '\n[tiers.cloud]\nprovider = "anthropic"\nmodel = "m"\n'
        'api_key_env = "SHIPYARD_TEST_KEY"\n'
    )
    rt = Runtime.open(load_project(root))
    with pytest.raises(ConfigError, match="does not exist"):
        rt.check_tiers()
    rt.close()
    secrets_file(root, "SHIPYARD_TEST_KEY=sk-from-file\n").rename(root / "keys.env")
    rt = Runtime.open(load_project(root))
    rt.check_tiers()
    assert rt.provider("cloud")._key == "sk-from-file"  # type: ignore[attr-defined]
    rt.close()
    # A key in shipyard.toml itself is not a thing: the table refuses unknown keys.
    config.write_text(config.read_text() + 'api_key = "sk-inline"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'tiers\.cloud\.api_key'"):
        load_project(root)
