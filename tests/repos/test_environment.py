"""Environments: setup runs in the sandbox once per set of dependency files; the result is
cached, relocatable and reused; a failed setup leaves nothing behind; two builders of the
same environment make one build."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from repos_support import copy_of, open_source, write
from shipyard.config import RepoSettings
from shipyard.repos import (
    EnvironmentBuild,
    WorkingCopy,
    create_working_copy,
    dependency_files,
    environment_digest,
    prepare_environment,
    resolve_base,
    source_roots,
    working_files,
)
from shipyard.sandbox import Limits, ProcessBackend, SandboxBackend, get_backend

LIMITS = Limits(timeout_seconds=180, cpu_seconds=180, memory_mb=2048, max_output_bytes=2_000_000)
INSTALL = ["pip", "install", "--no-index", "--find-links", "wheels", "greeting-lib"]
MARK = ["python", "-c", "import os; open(os.environ['VIRTUAL_ENV'] + '/built.txt', 'w')"]


def wheel() -> bytes:
    """A real wheel of a distribution ``greeting-lib`` whose import name is ``greeting``, with
    a console script."""
    info = "greeting_lib-1.0.dist-info"
    files = {
        "greeting/__init__.py": b"def hello():\n    return 'hi'\n\n\n"
        b"def main():\n    print(hello())\n",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: greeting-lib\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{info}/top_level.txt": b"greeting\n",
        f"{info}/entry_points.txt": b"[console_scripts]\ngreet = greeting:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


REPO = {
    "pyproject.toml": '[project]\nname = "shop"\nversion = "1"\ndependencies = ["greeting-lib"]\n',
    "src/shop/__init__.py": "from greeting import hello\n\nGREETING = hello()\n",
    "wheels/greeting_lib-1.0-py3-none-any.whl": wheel(),
}


@pytest.fixture(scope="module")
def backend() -> Iterator[SandboxBackend]:
    """The sandbox the project would use: bubblewrap where it works."""
    sandbox = get_backend("auto")
    yield sandbox
    sandbox.close()


def settings(**more: object) -> RepoSettings:
    return RepoSettings.model_validate({"path": "repo", **more})


def build(
    copy: WorkingCopy, envs: Path, backend: SandboxBackend, **more: object
) -> EnvironmentBuild:
    return prepare_environment(
        copy, settings(**more), envs_dir=envs, backend=backend, limits=LIMITS
    )


def test_the_digest_follows_the_dependency_files_and_setup(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo({**REPO, "requirements-dev.txt": "pytest\n"}))
    tree = copy.path
    assert dependency_files(tree) == ["pyproject.toml", "requirements-dev.txt"]
    first = environment_digest(tree, [INSTALL], index_url="https://pypi.org/simple")
    write(tree, {"src/shop/__init__.py": "GREETING = 'x'\n", "README.md": "# Shop\n"})
    assert environment_digest(tree, [INSTALL], index_url="https://pypi.org/simple") == first
    write(tree, {"requirements/test.txt": "hypothesis\n"})
    second = environment_digest(tree, [INSTALL], index_url="https://pypi.org/simple")
    assert second != first
    write(tree, {"pyproject.toml": REPO["pyproject.toml"] + "# a comment\n"})
    third = environment_digest(tree, [INSTALL], index_url="https://pypi.org/simple")
    assert third != second
    assert environment_digest(tree, [INSTALL, MARK], index_url="https://pypi.org/simple") != third
    assert environment_digest(tree, [INSTALL], index_url="http://127.0.0.1:1/simple") != third


def test_without_setup_tests_use_shipyards_own_interpreter(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(REPO))
    result = prepare_environment(
        copy, settings(), envs_dir=project / "envs", backend=ProcessBackend(), limits=LIMITS
    )
    environment = result.environment
    assert environment is not None and environment.own and not result.built
    assert environment.command(["python", "-m", "pytest"]) == ["python", "-m", "pytest"]
    assert environment.variables() == {}
    assert environment.variables(python_path=["/w/src"]) == {"PYTHONPATH": "/w/src"}
    assert not (project / "envs").exists()


def test_an_environment_is_built_once_then_reused_wherever_it_is_used(
    project: Path, make_repo, backend: SandboxBackend
) -> None:
    repo = make_repo(REPO)
    copy = copy_of(project, repo)
    envs = project / ".shipyard" / "envs"
    first = build(copy, envs, backend, setup=[INSTALL, MARK])
    assert first.ok and first.built, (first.findings, first.log)
    environment = first.environment
    assert environment is not None and environment.path == envs / environment.digest
    assert (environment.path / "built.txt").is_file()
    assert environment.files == ("pyproject.toml",)
    assert "$ pip install --no-index" in first.log
    assert [p.name for p in envs.iterdir() if not p.name.endswith(".lock")] == [environment.digest]
    # Another working copy of the same dependency files reuses it without running setup.
    other = create_working_copy(open_source(project, repo), key="task-2", base=copy.base)
    again = build(other, envs, backend, setup=[INSTALL, MARK])
    assert again.ok and not again.built and again.environment == environment
    # Its console scripts and interpreter work from where it is now, not where it was built.
    greet = subprocess.run(
        [str(environment.path / "bin" / "greet")], capture_output=True, text=True, check=False
    )
    assert (greet.returncode, greet.stdout) == (0, "hi\n"), greet.stderr
    # A run uses the environment's interpreter and the working copy's own code.
    roots = [str(copy.path / r) if r else str(copy.path) for r in source_roots(working_files(copy))]
    run = ProcessBackend().run(
        environment.command(["python", "-c", "import shop, sys; print(shop.GREETING, sys.prefix)"]),
        workdir=copy.path,
        limits=LIMITS,
        env=environment.variables(python_path=roots),
    )
    assert run.exit_code == 0, run.stderr
    assert run.stdout.split() == ["hi", str(environment.path)]


def test_a_failing_setup_is_a_finding_and_caches_nothing(
    project: Path, make_repo, backend: SandboxBackend
) -> None:
    copy = copy_of(project, make_repo(REPO))
    envs = project / ".shipyard" / "envs"
    broken = ["python", "-c", "import sys; print('no index here', file=sys.stderr); sys.exit(3)"]
    result = build(copy, envs, backend, setup=[MARK, broken])
    assert not result.ok and not result.built and result.environment is None
    (finding,) = result.findings
    assert finding.rule == "repo.setup-failed"
    assert "exited with status 3" in finding.message and "no index here" in finding.message
    assert [p.name for p in envs.iterdir() if not p.name.endswith(".lock")] == []


def test_two_builders_of_one_environment_make_one_build(
    project: Path, make_repo, backend: SandboxBackend
) -> None:
    repo = make_repo(REPO)
    source = open_source(project, repo)
    base = resolve_base(source)
    copies = [create_working_copy(source, key=f"task-{n}", base=base) for n in range(2)]
    envs = project / ".shipyard" / "envs"
    start = threading.Barrier(2)
    results: list[EnvironmentBuild] = []

    def builder(copy: WorkingCopy) -> None:
        start.wait()
        results.append(build(copy, envs, backend, setup=[MARK]))

    threads = [threading.Thread(target=builder, args=(c,)) for c in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert len(results) == 2 and all(r.ok for r in results), [r.findings for r in results]
    assert sorted(r.built for r in results) == [False, True]
    assert results[0].environment == results[1].environment
    assert len([p for p in envs.iterdir() if not p.name.endswith(".lock")]) == 1
