"""The import guard against a real (loopback) PEP 503 index: the standard library, the
repository's own code and declared dependencies pass; an undeclared dependency is a new
dependency that raises the risk; a typo of a real package or a name the index does not know
is refused; an index that cannot be reached is said so, not guessed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from repos_support import copy_of, write
from shipyard.model import Finding
from shipyard.repos import (
    Environment,
    ImportReport,
    PackageIndex,
    added_imports,
    changes,
    declared_dependencies,
    guard_imports,
    own_modules,
    resolve_index_url,
)
from shipyard.repos._imports import distance

KNOWN = {"requests", "flask", "numpy", "pyyaml", "httpx", "attrs", "greeting-lib"}


class Index:
    """A tiny PEP 503 index on loopback: /simple/NAME/ is 200 for KNOWN names, else 404."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.removeprefix("/simple/").strip("/")
                index.asked.append(name)
                status = 200 if name in KNOWN else 404
                body = f"<html><body>{name}</body></html>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def index() -> Iterator[Index]:
    served = Index()
    yield served
    served.close()


REPO = {
    "pyproject.toml": (
        "[project]\nname = 'shop'\nversion = '1'\n"
        "dependencies = ['requests>=2', 'PyYAML ; python_version > \"3\"']\n"
        "[project.optional-dependencies]\ntest = ['pytest']\n"
    ),
    "src/shop/__init__.py": "",
    "src/shop/cart.py": "import os\n\n\ndef total(items):\n    return sum(items)\n",
    "src/shop/sibling.py": "X = 1\n",
    "tests/helpers.py": "def make():\n    return []\n",
    "tests/test_cart.py": "from shop.cart import total\n",
    "scripts/tool.py": "print('tool')\n",
}


def guard(project: Path, make_repo, index: Index, files: dict[str, str], **kw: object):
    copy = copy_of(project, make_repo(REPO))
    write(copy.path, files)
    change = changes(copy)
    return guard_imports(copy, change, index=PackageIndex(index.url), **kw)  # type: ignore[arg-type]


def rules(report: ImportReport) -> dict[str, str]:
    return {f.message.split(":")[0].removeprefix("import "): f.rule for f in report.findings}


def test_stdlib_own_code_relative_and_declared_imports_pass(
    project: Path, make_repo, index: Index
) -> None:
    report = guard(project, make_repo, index, {
        "src/shop/cart.py": (
            "from __future__ import annotations\nimport os\nimport json\n"
            "import requests\nimport yaml\nimport pytest\nfrom shop import sibling\n"
            "from . import sibling as again\nfrom .sibling import X\n\n\n"
            "def total(items):\n    return sum(items)\n"
        ),
        "tests/test_cart.py": "import helpers\nfrom shop.cart import total\nimport scripts.tool\n",
    })  # fmt: skip
    assert report.findings == () and report.passed and not report.raises_risk
    assert report.checked == 10
    assert index.asked == []  # nothing needed the index


def test_an_undeclared_dependency_is_a_new_dependency_that_raises_risk(
    project: Path, make_repo, index: Index
) -> None:
    report = guard(project, make_repo, index, {"src/shop/web.py": "import flask\n\n\napp = 1\n"})
    (finding,) = report.findings
    assert finding == Finding(
        rule="imports.new-dependency",
        message="import flask: a new dependency 'flask' (the repository does not declare it "
        "(pyproject.toml, requirements*.txt, setup.cfg))",
        file="src/shop/web.py",
        line=1,
        severity="warning",
    )
    assert report.passed and report.raises_risk and report.new_dependencies == ("flask",)


def test_a_dependency_the_change_declares_is_still_new(
    project: Path, make_repo, index: Index
) -> None:
    pyproject = REPO["pyproject.toml"].replace("'requests>=2'", "'requests>=2', 'httpx'")
    report = guard(project, make_repo, index, {
        "pyproject.toml": pyproject,
        "src/shop/client.py": "import httpx\n",
    })  # fmt: skip
    assert rules(report) == {"httpx": "imports.new-dependency"}
    assert "the change declares it" in report.findings[0].message
    assert report.new_dependencies == ("httpx",)


def test_typos_of_declared_or_popular_packages_are_refused(
    project: Path, make_repo, index: Index
) -> None:
    report = guard(project, make_repo, index, {
        "src/shop/fetch.py": "import reqeusts\nimport numpyy\nfrom flaks import Flask\n",
    })  # fmt: skip
    assert rules(report) == {
        "reqeusts": "imports.typosquat",
        "numpyy": "imports.typosquat",
        "flaks": "imports.typosquat",
    }
    assert "1 letter away from 'requests'" in report.findings[0].message
    assert not report.passed and set(report.refused) == {"reqeusts", "numpyy", "flaks"}
    assert index.asked == []  # refused before asking


def test_a_name_the_index_does_not_know_is_refused_as_hallucinated(
    project: Path, make_repo, index: Index
) -> None:
    report = guard(project, make_repo, index, {"src/shop/ai.py": "import quantumcartlib\n"})
    assert rules(report) == {"quantumcartlib": "imports.unknown-package"}
    assert f"the package index {index.url} has no package 'quantumcartlib'" in (
        report.findings[0].message
    )
    assert not report.passed and report.refused == ("quantumcartlib",)
    assert index.asked == ["quantumcartlib"]


def test_an_unreachable_index_is_said_so_not_guessed(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(REPO))
    write(copy.path, {"src/shop/web.py": "import flask\n"})
    unreachable = PackageIndex("http://127.0.0.1:9/simple", timeout=2)
    report = guard_imports(copy, changes(copy), index=unreachable)
    (finding,) = report.findings
    assert finding.rule == "imports.unverified" and finding.severity == "warning"
    assert "could not be reached" in finding.message
    assert report.passed and report.new_dependencies == ("flask",)


def test_the_index_answers_are_cached_in_memory_and_on_disk(index: Index, tmp_path: Path) -> None:
    cache = tmp_path / "index.json"
    first = PackageIndex(index.url, cache_file=cache)
    assert first.lookup("Flask") == "known" and first.lookup("flask") == "known"
    assert first.lookup("nothing-here") == "unknown"
    assert index.asked == ["flask", "nothing-here"]
    second = PackageIndex(index.url, cache_file=cache)
    assert second.lookup("flask") == "known" and second.lookup("nothing_here") == "unknown"
    assert index.asked == ["flask", "nothing-here"]
    elsewhere = PackageIndex(index.url + "/", cache_file=cache)
    assert elsewhere.url == index.url


def test_an_environment_maps_import_names_to_distributions(
    project: Path, make_repo, index: Index
) -> None:
    site = project / "env" / "lib" / "python3.11" / "site-packages"
    info = site / "greeting_lib-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeting-lib\nVersion: 1.0\n")
    (info / "RECORD").write_text("greeting/__init__.py,,\ngreeting_lib-1.0.dist-info/RECORD,,\n")
    environment = Environment(digest="x", path=project / "env")
    pyproject = REPO["pyproject.toml"].replace("'requests>=2'", "'requests>=2', 'greeting-lib'")
    copy = copy_of(project, make_repo({**REPO, "pyproject.toml": pyproject}))
    write(copy.path, {"src/shop/hi.py": "from greeting import hello\n"})
    with_env = guard_imports(
        copy, changes(copy), index=PackageIndex(index.url), environment=environment
    )
    assert with_env.findings == ()
    without = guard_imports(copy, changes(copy), index=PackageIndex(index.url))
    assert rules(without) == {"greeting": "imports.unknown-package"}


def test_declared_dependencies_come_from_every_kind_of_file() -> None:
    files = {
        "pyproject.toml": "[tool.poetry.dependencies]\npython = '^3.11'\nDjango = '*'\n"
        "[dependency-groups]\ndev = ['ruff==0.5']\n",
        "requirements.txt": "# pinned\nnumpy==1.26 # fast\n-r requirements/extra.txt\n"
        "-e .\ngit+https://x/y.git#egg=internal_tool\nlocal @ file:///tmp/x\n",
        "requirements/extra.txt": "scipy>=1\n",
        "setup.cfg": "[options]\ninstall_requires =\n    Click>=8\n"
        "[options.extras_require]\nweb = Flask\n",
        "setup.py": "from setuptools import setup\nsetup(install_requires=['attrs'], "
        "extras_require={'x': ['six']})\n",
        "Pipfile": "[packages]\nrich = '*'\n",
    }
    names = declared_dependencies(list(files), files.get)
    assert names == {
        "django", "ruff", "numpy", "scipy", "internal-tool", "local", "click", "flask",
        "attrs", "six", "rich",
    }  # fmt: skip


def test_added_imports_compare_old_and_new_versions() -> None:
    old = "import os\nfrom shop import cart\n"
    new = (
        "import os\nimport os.path\nfrom shop import tax\nimport requests, yaml\nfrom . import x\n"
    )
    added = added_imports(old, new)
    assert added is not None
    assert [(i.module, i.line, i.level) for i in added] == [
        ("requests", 4, 0),
        ("yaml", 4, 0),
        ("", 5, 1),
    ]
    assert added_imports(None, "import os\n") is not None
    assert added_imports(old, "import (\n") is None


def test_own_modules_cover_src_flat_and_namespace_layouts() -> None:
    paths = [
        "src/shop/__init__.py",
        "src/plugins/extra/mod.py",  # a namespace package
        "tool.py",
        "lib/helpers.py",
        ".hidden/x.py",
        "README.md",
    ]
    assert own_modules(paths) == {"shop", "plugins", "tool", "lib"}


def test_damerau_levenshtein_distance() -> None:
    assert distance("requests", "reqeusts") == 1  # a transposition
    assert distance("numpy", "numpyy") == 1
    assert distance("flask", "flaks") == 1
    assert distance("django", "djnago") == 1
    assert distance("pandas", "pnadsa") == 2
    assert distance("abc", "xyzuvw", 2) == 3


def test_the_index_url_defaults_to_pips_then_pypi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    config = tmp_path / "pip.conf"
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    assert resolve_index_url("") == "https://pypi.org/simple"
    config.write_text("[global]\nindex-url = https://mirror.example/simple/\n")
    assert resolve_index_url("") == "https://mirror.example/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")
    assert resolve_index_url("") == "https://env.example/simple"
    assert resolve_index_url("https://own.example/simple/") == "https://own.example/simple"
