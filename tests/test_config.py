from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import find_project, load_project, load_settings
from shipyard.errors import ConfigError

VALID = """\
[project]
name = "shop"

[generate]
tier = "template"

[domains.storefront]
jobs = ["jobs/landing-page", "jobs/product-copy"]
concurrency = 4
worker_concurrency = 2

[targets.storefront-site]
kind = "static-site"
keep_versions = 5

[sandbox]
timeout_seconds = 12.5
cpu_seconds = 7

[serve]
port = 9000
target = "storefront-site"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own settings must not leak into what these tests see.
    monkeypatch.delenv("SHIPYARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("SHIPYARD_PROJECT", raising=False)


def write_config(folder: Path, text: str) -> Path:
    path = folder / "shipyard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value


def test_valid_file_loads_with_typed_values(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, VALID))

    assert settings.project.name == "shop"
    domain = settings.domains["storefront"]
    assert domain.jobs == ["jobs/landing-page", "jobs/product-copy"]
    assert domain.concurrency == 4
    assert domain.worker_concurrency == 2
    assert settings.targets["storefront-site"].keep_versions == 5
    assert settings.sandbox.timeout_seconds == 12.5
    assert isinstance(settings.sandbox.timeout_seconds, float)
    assert settings.sandbox.cpu_seconds == 7
    assert settings.serve.port == 9000
    # Keys the file leaves out get their documented defaults.
    assert settings.sandbox.memory_mb == 2048
    assert settings.generate.tier == "template"
    assert list(settings.tiers) == ["template"] and settings.chain == ["template"]


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[domains.storefront]\njobs = ["jobs/a"]\nconcurency = 3\n')

    error = config_error(path)

    assert str(path) in error.message
    assert "domains.storefront.concurency" in error.message
    assert "worker_concurrency" in error.hint
    assert "concurrency" in error.hint.split("allowed keys there:")[1]
    assert error.details["file"] == str(path)


def test_unknown_top_level_key_lists_the_sections(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[sandboxx]\nbackend = 'process'\n")

    error = config_error(path)

    assert "'sandboxx'" in error.message
    assert "sandbox" in error.hint
    assert "domains" in error.hint


def test_unknown_key_hint_for_a_domain_named_like_a_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[domains.jobs]\njobs = ["jobs/a"]\nconcurency = 3\n')

    error = config_error(path)

    assert "domains.jobs.concurency" in error.message
    assert "worker_concurrency" in error.hint


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[domains.storefront]\njobs = ["jobs/a"]\nconcurrency = "many"\n')

    error = config_error(path)

    assert str(path) in error.message
    assert "'domains.storefront.concurrency'" in error.message
    assert "'many'" in error.message


def test_value_out_of_range_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[targets.site]\nkeep_versions = 1\n")

    error = config_error(path)

    assert "'targets.site.keep_versions'" in error.message


def test_bad_toml_syntax_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[domains.storefront\njobs = [\n")

    error = config_error(path)

    assert str(path) in error.message
    assert "not valid TOML" in error.message


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.toml"

    error = config_error(path)

    assert str(path) in error.message
    assert "shipyard init" in error.hint


@pytest.mark.parametrize("name", ["Storefront", "store_front", "1shop"])
def test_domain_name_must_be_lowercase_slug(tmp_path: Path, name: str) -> None:
    path = write_config(tmp_path, f'[domains.{name}]\njobs = ["jobs/a"]\n')

    error = config_error(path)

    assert str(path) in error.message
    assert repr(name) in error.message
    assert "lowercase" in error.message


def test_the_api_and_console_get_a_port_of_their_own(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, "[serve]\nport = 9000\n"))
    assert settings.serve.admin_port == 8001 and settings.serve.admin_port != settings.serve.port
    assert settings.serve.max_body_bytes == 4 << 20 and settings.serve.max_json_depth == 32

    error = config_error(write_config(tmp_path, "[serve]\nport = 9000\nadmin_port = 9000\n"))
    assert "admin_port must differ from serve.port" in error.message
    both_free = load_settings(write_config(tmp_path, "[serve]\nport = 0\nadmin_port = 0\n"))
    assert both_free.serve.port == both_free.serve.admin_port == 0


def test_serve_target_must_be_declared(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, '[targets.storefront-site]\nkeep_versions = 3\n\n[serve]\ntarget = "blog"\n'
    )

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert str(path) in caught.value.message
    assert "serve.target" in caught.value.message
    assert "'blog'" in caught.value.message
    assert "storefront-site" in caught.value.hint


def test_database_defaults_to_sqlite_in_state_dir(tmp_path: Path) -> None:
    write_config(tmp_path, VALID)

    project = load_project(tmp_path)

    expected = (tmp_path / ".shipyard" / "shipyard.db").resolve()
    assert project.database_url == f"sqlite:///{expected}"
    assert project.is_sqlite
    assert project.root == tmp_path.resolve()


def test_database_url_from_environment_overrides_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, VALID)
    url = "postgresql://shipyard@127.0.0.1:5432/shipyard"
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", url)

    project = load_project(tmp_path)

    assert project.database_url == url
    assert not project.is_sqlite
    assert project.system_database_url == url


def test_mysql_database_url_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, VALID)
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", "mysql://root@127.0.0.1/shipyard")

    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)

    assert "SHIPYARD_DATABASE_URL" in caught.value.message
    assert "mysql://" in caught.value.message


def test_find_project_walks_up_from_a_subfolder(tmp_path: Path) -> None:
    write_config(tmp_path, VALID)
    deep = tmp_path / "jobs" / "landing-page" / "tests"
    deep.mkdir(parents=True)

    assert find_project(deep) == tmp_path.resolve()


def test_find_project_without_any_config_fails(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()

    with pytest.raises(ConfigError) as caught:
        find_project(folder)

    assert "shipyard.toml" in caught.value.message
    assert str(folder.resolve()) in caught.value.message


def test_a_model_in_generate_points_to_tiers(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.toml"
    path.write_text('[generate]\nprovider = "openai"\nmodel = "m"\n')
    with pytest.raises(ConfigError, match="models are declared as tiers now") as caught:
        load_settings(path)
    assert "[tiers.NAME]" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[generate]\ntier = "cloud"\n', "declare [tiers.cloud]"),
        ('[generate]\nchain = ["template", "gpu"]\n', "names tier 'gpu'"),
        ('[tiers.auto]\nprovider = "openai"\n', "'auto' is reserved"),
        ("[budgets]\ntask_usd = -1\n", "key 'budgets.task_usd'"),
    ],
)
def test_tier_and_budget_mistakes_are_named(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "shipyard.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert problem in caught.value.message


def test_tiers_keep_file_order_after_template(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.toml"
    path.write_text(
        '[tiers.local]\nprovider = "openai"\nmodel = "a"\n'
        '[tiers.cloud]\nprovider = "anthropic"\nmodel = "b"\n'
    )
    settings = load_settings(path)
    assert settings.chain == ["template", "local", "cloud"]
    assert settings.tiers["cloud"].model == "b"


def test_a_command_tier_takes_an_agent_and_what_it_may_see_and_reach(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "[tiers.agent]\n"
        'provider = "command"\n'
        'argv = ["aider", "--yes", "--message-file", "{goal_file}"]\n'
        "timeout_seconds = 900\n"
        'env = ["ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"]\n'
        'mounts = ["~/.aider.conf.yml", "tools"]\n'
        'egress = ["api.anthropic.com:443", "[::1]:8080"]\n',
    )
    tier = load_settings(path).tiers["agent"]
    assert tier.argv == ["aider", "--yes", "--message-file", "{goal_file}"]
    assert tier.model == "" and tier.timeout_seconds == 900
    assert tier.env == ["ANTHROPIC_API_KEY"]
    assert tier.mounts == ["~/.aider.conf.yml", "tools"]  # resolved when the tier is built
    assert tier.egress == ["api.anthropic.com:443", "[::1]:8080"]


@pytest.mark.parametrize(
    ("table", "problems"),
    [
        ('provider = "command"\n', ["key 'tiers.agent.argv'", "a command tier runs argv"]),
        ('provider = "command"\nargv = []\n', ["key 'tiers.agent.argv'"]),
        ('provider = "command"\nargv = ["aider", ""]\n', ["key 'tiers.agent.argv'"]),
        (
            'provider = "openai"\nmodel = "m"\nargv = ["aider"]\n',
            ["key 'tiers.agent.argv'", "for command tiers", "'openai'"],
        ),
        ('provider = "anthropic"\negress = ["a.b:443"]\n', ["key 'tiers.agent.egress'"]),
        (
            'provider = "command"\nargv = ["a"]\negress = ["api.anthropic.com"]\n',
            ["key 'tiers.agent.egress'", "'api.anthropic.com'", "host:port", "1-65535"],
        ),
        (
            'provider = "command"\nargv = ["a"]\negress = ["api.anthropic.com:99999"]\n',
            ["'api.anthropic.com:99999' is not host:port"],
        ),
        (
            'provider = "command"\nargv = ["a"]\negress = ["https://api.x.com:443"]\n',
            ["'https://api.x.com:443' is not host:port"],
        ),
        (
            'provider = "command"\nargv = ["a"]\negress = [":443"]\n',
            ["':443' is not host:port"],
        ),
        (
            'provider = "command"\nargv = ["a"]\nenv = ["OPENAI-KEY"]\n',
            ["key 'tiers.agent.env'", "'OPENAI-KEY' is not a variable name"],
        ),
        (
            'provider = "command"\nargv = ["a"]\nenv = ["HOME"]\n',
            ["key 'tiers.agent.env'", "HOME is set by Shipyard"],
        ),
        ('provider = "command"\nargv = ["a"]\nmounts = [""]\n', ["key 'tiers.agent.mounts'"]),
    ],
)
def test_command_tier_mistakes_name_the_key(
    tmp_path: Path, table: str, problems: list[str]
) -> None:
    error = config_error(write_config(tmp_path, "[tiers.agent]\n" + table))
    for problem in problems:
        assert problem in error.message
