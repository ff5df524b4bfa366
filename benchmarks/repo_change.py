"""What verifying a repository change costs: the sandbox's share, and Shipyard's own.

Three fixture repositories (``fixtures/repos/NAME/`` made git repositories in a temporary
project; ``NAME.toml`` holds each one's setup, test command, a goal and a recorded reply of
edits): ``tiny`` (10 tests, no setup), ``params`` (200 parametrized tests; setup installs
pytest) and ``deps`` (tests import ``attrs``, which setup installs). Setup installs from this
machine's package index: the first ``file://`` index pip is configured with that has the
packages, else ``resolve_index_url()`` (``--index-url`` picks one); passed as
``PIP_INDEX_URL`` (a ``file://`` index's parent folder is mounted for setup, so pages that
link to ``../files`` resolve).

Per repository, in one run:

1. **Its tests, sandboxed vs plain, environment cached** (target: ratio of medians <= 1.2).
   One real ``verify_change`` on a copy with the change applied, through a backend that
   records the arguments of each run it hands to ``BwrapBackend``: the first is the test run
   (argv, variables, the environment's and object stores' mounts, in place). Then
   ``--runs`` times, interleaved: that run again as verification stages it (the tree and
   ``.git`` copied into a fresh workspace, ``backend.run``, the workspace removed), and the
   same argv and variables as a plain ``subprocess.run`` in a copy of the tree (sandbox
   paths made the host's). Median and p90 of each; ``backend.run`` alone too.
2. **Shipyard's own time per change**, generator and test run excluded, ``--runs`` changes:
   working copies, the patch, the change, map + context, the reply's edits, the environment
   from the cache, and inside ``verify_change`` the import guard, Shipyard's own checks and
   the rest (``guard_imports``, ``_own_checks``, ``_test_result`` of its module are wrapped
   with a timer for the duration). Each part's median and their sum.
3. **The first (cold) environment build** (``python -m venv`` and setup in the sandbox).

``benchmarks/README.md`` says more. Percentiles are nearest-rank. Exit status: 0 when it
completes, met or not; 1 when a measured test run failed; 2 without bubblewrap or without
the sandbox mounts and ``verify_change`` it measures.

Usage::

    .venv/bin/python benchmarks/repo_change.py [--runs N] [--repos tiny,deps] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from _harness import FIXTURES, machine_line, percentile, side_by_side

from shipyard.config import RepoSettings
from shipyard.repos import (
    ENV_MOUNT,
    Change,
    ChangeLimits,
    Environment,
    EnvironmentBuild,
    PackageIndex,
    WorkingCopy,
    apply_edits,
    apply_patch,
    build_context,
    changes,
    create_working_copy,
    map_working_copy,
    normalize_name,
    open_repo,
    parse_edits,
    prepare_environment,
    remove_working_copy,
    resolve_base,
    resolve_index_url,
    working_files,
)
from shipyard.sandbox import WORK, BwrapBackend, Limits, RunResult, bwrap_available
from shipyard.sandbox import run_environment as sandbox_environment

REPOS = ("tiny", "params", "deps")
RATIO_TARGET = 1.2
TEST_LIMITS = replace(Limits(), timeout_seconds=600.0)
"""What ``orchestrator._change`` gives a repository's test suite."""
SETUP_LIMITS = replace(Limits(), timeout_seconds=900.0, cpu_seconds=1800)
"""What ``orchestrator._change`` gives one setup command."""
PROBED = {"_test_result": "v.test", "_own_checks": "v.own", "guard_imports": "v.guard"}
"""Functions of ``verify_change``'s module timed inside it, and their timings' keys."""
PARTS = {
    "working copies (generate, verify)": ("g.copy", "g.removed", "v.copy", "v.removed"),
    "patch applied (verify)": ("v.patch",),
    "change computed (generate, verify)": ("g.change", "v.change"),
    "map + context": ("g.context",),
    "edits parsed + applied": ("g.edits",),
    "environment, cache hit": ("v.environment",),
    "import guard": ("v.guard",),
    "own checks (compile, ruff, bandit, secrets)": ("v.own",),
    "verify_change, the rest": ("v.rest",),
}
"""The rows of part 2, each the sum of these timings of one change."""
Verify = Callable[..., Any]


@dataclass(frozen=True, kw_only=True)
class Fixture:
    """One fixture repository and the change made to it."""

    name: str
    """Its folder under ``fixtures/repos/`` (and the ``[repos.NAME]`` name)."""
    about: str
    """The comment lines of ``NAME.toml``: what shape it is."""
    goal: str
    """The change's goal."""
    setup: list[list[str]]
    """``[repos.NAME] setup``."""
    test: list[str]
    """``[repos.NAME] test``."""
    reply: str
    """A model's reply: the edits that make the change."""
    index_packages: list[str]
    """What its setup installs from the package index (looked for before it runs)."""


@dataclass(kw_only=True)
class Figures:
    """Everything measured on one repository (times in ms)."""

    name: str
    skipped: str = ""
    index_url: str = ""
    tests: int = 0
    cold_build_ms: float | None = None
    sandboxed_ms: list[float] = field(default_factory=list)
    backend_run_ms: list[float] = field(default_factory=list)
    plain_ms: list[float] = field(default_factory=list)
    verify_test_ms: list[float] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One ``backend.run`` as ``verify_change`` made it."""

    argv: list[str]
    """The command."""
    options: dict[str, Any]
    """Its keyword arguments but ``workdir`` (``limits``, ``env``, ``mounts``, …)."""


class Recorder:
    """A sandbox backend that hands every run to ``inner`` and keeps its arguments."""

    def __init__(self, inner: BwrapBackend) -> None:
        self.inner, self.name, self.isolated = inner, inner.name, inner.isolated
        self.calls: list[Call] = []

    def workspace(self) -> Any:
        return self.inner.workspace()

    def run(self, argv: Sequence[str], *, workdir: Path, **options: Any) -> RunResult:
        self.calls.append(Call(argv=list(argv), options=dict(options)))
        return self.inner.run(argv, workdir=workdir, **options)

    def warm(self) -> None:
        self.inner.warm()

    def close(self) -> None:
        """The inner backend is the caller's to close."""


class Clock:
    """Adds the time of ``with clock("key"):`` blocks to ``clock.spent[key]`` (ms)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent[key] = self.spent.get(key, 0.0) + (time.perf_counter() - started) * 1000


# --- a fixture made a repository, and what Shipyard does with it -----------------------------


def load_fixture(name: str) -> Fixture:
    text = (FIXTURES / "repos" / f"{name}.toml").read_text(encoding="utf-8")
    comment = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    return Fixture(name=name, about=" ".join(comment), **tomllib.loads(text))


def make_repository(fixture: Fixture, project: Path) -> None:
    """``project/NAME``: the fixture's files as a git repository, one commit on main."""
    folder = project / fixture.name
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache")
    shutil.copytree(FIXTURES / "repos" / fixture.name, folder, ignore=ignore)
    who = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost"}
    who |= {"GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fixture"]):
        command = ["git", "-c", "commit.gpgsign=false", *args]
        subprocess.run(command, cwd=folder, env=os.environ | who, check=True, capture_output=True)


@dataclass(frozen=True, kw_only=True)
class Bench:
    """One fixture as a ``[repos.NAME]`` of a temporary project, and the calls ``generate``
    and ``verify`` make on it (as ``orchestrator/_change.py`` makes them)."""

    fixture: Fixture
    settings: RepoSettings
    project: Path
    base: str
    backend: BwrapBackend
    verify_change: Verify

    @property
    def state_dir(self) -> Path:
        return self.project / ".shipyard"

    def copy(self, key: str) -> WorkingCopy:
        source = open_repo(
            self.fixture.name,
            self.settings,
            root=self.project,
            state_dir=self.state_dir,
            fetch=False,
        )
        return create_working_copy(source, key=key, base=self.base)

    def environment(self, copy: WorkingCopy) -> EnvironmentBuild:
        return prepare_environment(
            copy,
            self.settings,
            envs_dir=self.state_dir / "envs",
            backend=self.backend,
            limits=SETUP_LIMITS,
        )

    def change(self, copy: WorkingCopy) -> Change:
        return changes(copy, limits=ChangeLimits.from_settings(self.settings))

    def verify(
        self, copy: WorkingCopy, change: Change, environment: Environment, backend: Any
    ) -> Any:
        index = PackageIndex(
            resolve_index_url(self.settings.index_url),
            cache_file=self.state_dir / "repos" / self.fixture.name / "index-cache.json",
        )
        return self.verify_change(
            copy,
            change,
            self.settings,
            goal=self.fixture.goal,
            environment=environment,
            backend=backend,
            limits=TEST_LIMITS,
            index=index,
        )


def generate_side(bench: Bench, key: str, clock: Clock) -> str:
    """What ``generate`` does around the generator; the change's patch."""
    with clock("g.copy"):
        copy = bench.copy(key)
    with clock("g.context"):
        tokens = bench.settings.max_context_tokens
        context = build_context(
            bench.fixture.goal, map_working_copy(copy), copy.path, max_tokens=tokens
        )
    with clock("g.edits"):
        applied = apply_edits(copy.path, parse_edits(bench.fixture.reply).edits)
    with clock("g.change"):
        change = bench.change(copy)
    with clock("g.removed"):
        remove_working_copy(copy)
    if applied.problems or not change.patch or not context.text:
        raise SystemExit(f"{bench.fixture.name}: the recorded reply did not apply: {applied}")
    return change.patch


def verify_side(bench: Bench, key: str, patch: str, clock: Clock) -> Any:
    """What ``verify`` does, ``verify_change`` included; the verification."""
    with clock("v.copy"):
        copy = bench.copy(key)
    with clock("v.patch"):
        apply_patch(copy, patch)
    with clock("v.environment"):
        build = bench.environment(copy)
    if build.environment is None or build.built:
        raise SystemExit(f"{bench.fixture.name}: no cache hit for the environment: {build}")
    with clock("v.change"):
        change = bench.change(copy)
    with clock("v.verify_change"):
        verification = bench.verify(copy, change, build.environment, bench.backend)
    with clock("v.removed"):
        remove_working_copy(copy)
    return verification


# --- part 1: the tests, sandboxed and plain -------------------------------------------------


def capture_test_run(bench: Bench, copy: WorkingCopy, environment: Environment) -> Call:
    """The test run's arguments, from one real ``verify_change`` on ``copy``."""
    recorder = Recorder(bench.backend)
    verification = bench.verify(copy, bench.change(copy), environment, recorder)
    failed = [r.check for r in verification.report.results if not r.passed]
    if failed or not recorder.calls:
        raise SystemExit(
            f"{bench.fixture.name}: verify_change did not pass (failed: {failed}; "
            f"{len(recorder.calls)} sandbox runs): {verification.report.to_dict()}"
        )
    call = recorder.calls[0]
    if not call.options.get("in_place") or not any("pytest" in arg for arg in call.argv):
        raise SystemExit(f"{bench.fixture.name}: the first sandbox run is not the tests: {call}")
    return call


def sandboxed(bench: Bench, copy: WorkingCopy, files: Sequence[str], call: Call) -> RunResult:
    """One test run as verification stages and runs it: a fresh workspace holding the tree
    and its ``.git``, ``backend.run`` with the recorded arguments (its ``duration_ms`` made
    the wall time of that call), the workspace removed."""
    with bench.backend.workspace() as workspace:
        for path in files:
            target = workspace / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(copy.path / path, target, follow_symlinks=False)
        shutil.copytree(copy.path / ".git", workspace / ".git", symlinks=True)
        started = time.perf_counter()
        result = bench.backend.run(call.argv, workdir=workspace, **call.options)
        return replace(result, duration_ms=(time.perf_counter() - started) * 1000)


def plain_command(
    call: Call, environment: Environment, tree: Path, tmp: Path
) -> tuple[list[str], dict[str, str]]:
    """The recorded run's argv and variables with the sandbox's paths made the host's, over
    the base variables every sandbox run gets (``HOME`` the tree, as ``/sandbox/work`` is)."""

    def host(text: str) -> str:
        if environment.path is not None:
            text = text.replace(ENV_MOUNT, str(environment.path))
        return text.replace(WORK, str(tree))

    env = sandbox_environment(home=str(tree), tmpdir=str(tmp))
    env |= {name: host(value) for name, value in (call.options.get("env") or {}).items()}
    return [host(arg) for arg in call.argv], env


def passed_count(output: str) -> int:
    """``N`` of pytest's ``N passed`` summary (0 when it has none)."""
    for line in reversed(output.splitlines()):
        words = line.replace(",", " ").split()
        if "passed" in words and (at := words.index("passed")) and words[at - 1].isdigit():
            return int(words[at - 1])
    return 0


def tests_side_by_side(figures: Figures, bench: Bench, runs: int) -> None:
    """Part 1: one capturing ``verify_change``, one plain warm-up, then ``runs`` sandboxed
    and plain test runs, interleaved."""
    copy = bench.copy("tests")
    apply_patch(copy, generate_side(bench, "reply", Clock()))
    if bench.change(copy).empty:
        raise SystemExit(f"{bench.fixture.name}: apply_patch left the working copy as it was")
    build = bench.environment(copy)  # the first: cold, unless there is no setup
    if build.environment is None:
        raise SystemExit(f"{bench.fixture.name}: setup failed: {build.findings}\n{build.log}")
    figures.cold_build_ms = build.duration_ms if build.built else None
    call = capture_test_run(bench, copy, build.environment)
    tree, tmp = bench.project / "plain" / "tree", bench.project / "plain"
    shutil.copytree(copy.path, tree, symlinks=True)
    argv, env = plain_command(call, build.environment, tree, tmp)
    files = working_files(copy)

    def plain() -> tuple[float, subprocess.CompletedProcess[str]]:
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
        return (time.perf_counter() - started) * 1000, done

    plain()
    for number in range(1, runs + 1):
        started = time.perf_counter()
        result = sandboxed(bench, copy, files, call)
        figures.sandboxed_ms.append((time.perf_counter() - started) * 1000)
        figures.backend_run_ms.append(result.duration_ms)
        figures.tests = figures.tests or passed_count(result.stdout)
        if result.exit_code != 0 or passed_count(result.stdout) != figures.tests:
            output = (result.stdout + result.stderr)[-300:]
            figures.problems.append(f"sandboxed run {number}: exit {result.exit_code}: {output}")
        elapsed, done = plain()
        figures.plain_ms.append(elapsed)
        if done.returncode != 0 or passed_count(done.stdout) != figures.tests:
            output = (done.stdout + done.stderr)[-300:]
            figures.problems.append(f"plain run {number}: exit {done.returncode}: {output}")
    remove_working_copy(copy)


# --- part 2: Shipyard's own time per change -------------------------------------------------


@contextmanager
def probed(module: Any, names: Mapping[str, str]) -> Iterator[dict[str, float]]:
    """``module``'s functions among ``names`` wrapped so their wall time (ms) adds up in
    the dict yielded, under the key ``names`` gives (reset it between measurements)."""
    spent: dict[str, float] = {}
    originals = {name: getattr(module, name) for name in names if hasattr(module, name)}

    def timed(key: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[key] += (time.perf_counter() - started) * 1000

        return wrapper

    for name, function in originals.items():
        spent[names[name]] = 0.0
        setattr(module, name, timed(names[name], function))
    try:
        yield spent
    finally:
        for name, function in originals.items():
            setattr(module, name, function)


def platform_time(figures: Figures, bench: Bench, runs: int) -> None:
    """Part 2: ``runs`` changes' platform work, each timing kept in ``figures``."""
    module = importlib.import_module(bench.verify_change.__module__)
    with probed(module, PROBED) as inside:
        for number in range(1, runs + 1):
            clock = Clock()
            inside.update(dict.fromkeys(inside, 0.0))
            patch = generate_side(bench, f"g{number}", clock)
            verification = verify_side(bench, f"v{number}", patch, clock)
            results = verification.report.results
            if failed := [r.check for r in results if not r.passed]:
                figures.problems.append(f"change {number}: failed {', '.join(failed)}")
            figures.verify_test_ms += [r.duration_ms for r in results if r.check == "test"][:1]
            spent = clock.spent | {key: 0.0 for key in PROBED.values()} | inside
            inner = sum(spent[key] for key in PROBED.values())  # test run, own checks, guard
            spent["v.rest"] = spent["v.verify_change"] - inner
            for key, value in spent.items():
                figures.timings.setdefault(key, []).append(value)


def measure(
    fixture: Fixture,
    workdir: Path,
    backend: BwrapBackend,
    runs: int,
    index: tuple[str | None, str],
    verify_change: Verify,
) -> Figures:
    """Parts 1, 2 and 3 on one fixture (or why it was skipped)."""
    figures = Figures(name=fixture.name)
    url, why = index
    if fixture.index_packages and url is None:
        figures.skipped = why
        return figures
    project = workdir / fixture.name
    make_repository(fixture, project)
    figures.index_url = url or ""
    settings = RepoSettings(path=fixture.name, setup=fixture.setup, test=fixture.test)
    source = open_repo(fixture.name, settings, root=project, state_dir=project / ".shipyard")
    bench = Bench(
        fixture=fixture,
        settings=settings,
        project=project,
        base=resolve_base(source),
        backend=backend,
        verify_change=verify_change,
    )
    with pip_index(url):
        tests_side_by_side(figures, bench, runs)
        platform_time(figures, bench, runs)
    return figures


# --- the package index ----------------------------------------------------------------------


@contextmanager
def pip_index(url: str | None) -> Iterator[None]:
    """``url`` as the index pip is configured with (``PIP_INDEX_URL``) for the block: where
    ``resolve_index_url()`` finds it for an empty ``[repos.NAME] index_url``, which takes
    only http(s) addresses."""
    saved = dict(os.environ)
    os.environ.update({"PIP_INDEX_URL": url} if url else {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def pip_indexes() -> list[str]:
    """The index URLs pip is configured with: ``index-url`` first, then ``extra-index-url``."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout.splitlines()
    found: list[str] = []
    for key in ("index-url", "extra-index-url"):
        for line in listed:
            name, _, value = line.partition("=")
            if name.rpartition(".")[2] == key:
                found += value.strip().strip("'\"").split()
    return found


def index_has(url: str, package: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return (Path(unquote(parts.path)) / normalize_name(package)).is_dir()
    return PackageIndex(url).lookup(package) == "known"


def choose_index(packages: Sequence[str], given: str) -> tuple[str | None, str]:
    """The index to install ``packages`` from and where it came from, or None and why not."""
    if not packages:
        return None, "nothing to install"
    if given:
        candidates = [(given, "--index-url")]
    else:
        configured = [(url, "pip's configuration") for url in pip_indexes()]
        local = [c for c in configured if c[0].startswith("file:")]
        candidates = [*local, (resolve_index_url(), "resolve_index_url()")]
    for url, origin in candidates:
        if all(index_has(url, package) for package in packages):
            return url.rstrip("/"), origin
    tried = ", ".join(url for url, _ in candidates)
    return None, f"no package index has {', '.join(packages)} (tried {tried})"


# --- reporting ------------------------------------------------------------------------------


def ratio(figures: Figures, top: str = "sandboxed_ms") -> float:
    return percentile(getattr(figures, top), 50) / percentile(figures.plain_ms, 50)


def part_medians(figures: Figures) -> dict[str, float]:
    rows = {}
    for label, keys in PARTS.items():
        per_change = [sum(v) for v in zip(*(figures.timings[k] for k in keys), strict=True)]
        rows[label] = percentile(per_change, 50)
    return rows


def table(measured: Sequence[Figures], rows: Sequence[tuple[str, Sequence[str]]]) -> None:
    for line in side_by_side([f.name for f in measured], rows, label=46, width=11):
        print(line)


def report(measured: Sequence[Figures], runs: int) -> None:
    done = [f for f in measured if not f.skipped]
    for figures in measured:
        if figures.skipped:
            print(f"{figures.name}: SKIPPED: {figures.skipped}")
    if not done:
        return

    def ms(name: str, q: float = 50) -> list[str]:
        return [f"{percentile(getattr(f, name), q):.1f}" for f in done]

    print(f"\n1. The repository's tests, environment cached: {runs} runs of each, interleaved")
    print("   (sandboxed: the tree staged into a workspace, backend.run, the workspace removed)\n")
    table(
        done,
        [
            ("tests passed per run", [str(f.tests) for f in done]),
            ("sandboxed, median (ms)", ms("sandboxed_ms")),
            ("sandboxed, p90 (ms)", ms("sandboxed_ms", 90)),
            ("  backend.run alone, median (ms)", ms("backend_run_ms")),
            ("plain subprocess, median (ms)", ms("plain_ms")),
            ("plain subprocess, p90 (ms)", ms("plain_ms", 90)),
            ("verify_change's test check, median (ms)", ms("verify_test_ms")),
            ("ratio sandboxed / plain (medians)", [f"{ratio(f):.2f}" for f in done]),
            (
                "ratio backend.run / plain (medians)",
                [f"{ratio(f, 'backend_run_ms'):.2f}" for f in done],
            ),
        ],
    )
    print(
        f"\n2. Shipyard's own time per change (generator and test run excluded), medians of "
        f"{runs} changes, ms\n"
    )
    parts = [part_medians(f) for f in done]
    rows = [(label, [f"{p[label]:.1f}" for p in parts]) for label in PARTS]
    table(done, [*rows, ("sum of the medians", [f"{sum(p.values()):.1f}" for p in parts])])
    print("\n3. The first (cold) environment build, once per set of dependency files\n")
    for figures in done:
        cold = figures.cold_build_ms
        shown = "no setup: Shipyard's own interpreter, nothing to build"
        print(f"  {figures.name:8} {shown if cold is None else f'{cold:.1f} ms'}")
    print()
    for figures in done:
        verdict = "met" if ratio(figures) <= RATIO_TARGET else "not met"
        print(f"ratio ≤ {RATIO_TARGET} ({figures.name}): {verdict} ({ratio(figures):.2f})")
    for figures in measured:
        for problem in figures.problems:
            print(f"PROBLEM {figures.name}: {problem}")


def as_json(
    measured: Sequence[Figures], indexes: Mapping[str, tuple[str | None, str]]
) -> dict[str, Any]:
    repos: dict[str, Any] = {}
    for figures in measured:
        raw = {key: value for key, value in vars(figures).items() if key != "name"}
        raw["machine_index_url"], raw["index_origin"] = indexes[figures.name]
        if not figures.skipped:
            raw |= {"parts_median_ms": part_medians(figures), "ratio": ratio(figures)}
            raw["target_met"] = ratio(figures) <= RATIO_TARGET
        repos[figures.name] = raw
    return {"machine": machine(), "ratio_target": RATIO_TARGET, "repos": repos}


def machine() -> dict[str, Any]:
    bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout
    return {
        "line": machine_line(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "bubblewrap": bwrap.strip(),
    }


# --- main -----------------------------------------------------------------------------------


def contract() -> Verify:
    """``verify_change``, once this Shipyard has what the script measures; else SystemExit."""
    if not bwrap_available():
        raise SystemExit(
            "bubblewrap is not available (not installed, or it may not create namespaces "
            "here): install it (`apt-get install bubblewrap`) on a machine that allows "
            "unprivileged user namespaces"
        )
    taken = inspect.signature(BwrapBackend.run).parameters
    if missing := [name for name in ("mounts", "egress", "in_place") if name not in taken]:
        raise SystemExit(
            f"this Shipyard's BwrapBackend.run takes no {', '.join(missing)}: update it "
            "(verification mounts the environment and the copy's object stores)"
        )
    try:
        from shipyard.checks import verify_change  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        raise SystemExit("this Shipyard has no shipyard.checks.verify_change: update it") from None
    return verify_change  # type: ignore[no-any-return, unused-ignore]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, metavar="N", help="runs of each (10)")
    parser.add_argument("--repos", default=",".join(REPOS), help="which, e.g. tiny,deps")
    parser.add_argument("--index-url", default="", help="the index setup installs from")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.repos.split(",") if name.strip()]
    if unknown := [name for name in names if name not in REPOS]:
        parser.error(f"unknown repositories {', '.join(unknown)}: choose among {', '.join(REPOS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        verify_change = contract()
    except SystemExit as exc:
        print(f"repo_change: {exc}", file=sys.stderr)
        return 2
    fixtures = [load_fixture(name) for name in names]
    indexes = {f.name: choose_index(f.index_packages, args.index_url) for f in fixtures}
    if not args.json:
        info = machine()
        print(f"machine: {info['line']}")
        print(f"cpu_count {info['cpu_count']}, Python {info['python']}, {info['bubblewrap']}")
        for fixture in fixtures:
            url, origin = indexes[fixture.name]
            print(f"{fixture.name}: {fixture.about}\n  change: {fixture.goal}")
            print(f"  package index: {url or '-'} ({origin})")
    backend = BwrapBackend()
    measured: list[Figures] = []
    try:
        backend.warm()
        with tempfile.TemporaryDirectory(prefix="shipyard-bench-repo-") as workdir:
            for fixture in fixtures:
                started, index = time.perf_counter(), indexes[fixture.name]
                figures = measure(fixture, Path(workdir), backend, args.runs, index, verify_change)
                measured.append(figures)
                if not args.json and not figures.skipped:
                    print(f"{fixture.name}: measured in {time.perf_counter() - started:.1f} s")
    finally:
        backend.close()
    if args.json:
        print(json.dumps(as_json(measured, indexes), indent=2))
    else:
        report(measured, args.runs)
    return 1 if any(f.problems for f in measured) else 0


if __name__ == "__main__":
    sys.exit(main())
