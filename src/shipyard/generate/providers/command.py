"""The ``command`` tier: a coding agent of the user's choice (``aider``, ``claude -p``,
``codex exec``, ``opencode run``, a script), run in the sandbox on a repository change's
working copy.

The agent works in the copy itself: whatever it leaves changed there is the attempt's output,
which the caller reads afterwards (``shipyard.repos.changes``), so the Generation carries no
files, only what the agent printed. What the agent gets:

- its ``argv`` with the placeholders ``{goal}`` (the goal's text), ``{goal_file}`` (a file
  holding it), ``{attempt}`` (1, 2, ...) and ``{feedback_file}`` ('' on the first attempt)
  replaced;
- an environment of ``SHIPYARD_GOAL`` (the goal), ``SHIPYARD_ATTEMPT``, on a repair
  ``SHIPYARD_FEEDBACK`` (the path of a text file with the previous attempt's findings, one
  per line; the same path + ``.json`` holds them as ``{"attempt": N, "findings": [{rule,
  message, file, line, severity, location}, ...]}``), ``HOME`` (a writable folder of its
  own, discarded afterwards) and the tier's ``env`` variables, valued from Shipyard's
  environment or the secrets file; nothing else of Shipyard's environment (the sandbox adds
  its own ``PATH``, ``TMPDIR``, ``LANG``);
- to see: the working copy (its working folder), what the request mounts, the tier's
  ``mounts`` read-only at their own paths, the goal and feedback files read-only (at
  :data:`FILES` in an isolated sandbox) and the home folder (at :data:`HOME`);
- to reach: only the tier's ``egress`` hosts, through Shipyard's egress proxy; without them,
  no network at all.

How it ends: exit 0 is a Generation. A timeout, a sandbox limit or a non-zero exit is a
MalformedReply: the attempt failed, its output's tail is the finding, the repair loop goes
on. A program that cannot be started (exit 127) is a ProviderError: the tier cannot serve
until its installation is mounted.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from shipyard.config import TierSettings
from shipyard.errors import ConfigError, MalformedReply, ProviderError, SandboxError
from shipyard.generate._provider import Generation, GenerationRequest
from shipyard.generate.providers._common import failure_details, read_key
from shipyard.model import Finding
from shipyard.sandbox import Limits, Mount, RunResult, SandboxBackend

__all__ = ["FILES", "HOME", "REPLY_CHARS", "CommandProvider"]

FILES = "/sandbox/shipyard"
"""Where an isolated run sees the goal and feedback files (read-only)."""
HOME = "/sandbox/home"
"""Where an isolated run sees its home folder (writable, discarded after the run)."""
REPLY_CHARS = 20_000
"""The most of the agent's output a Generation (or a failed attempt) keeps: its end."""

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_PLACEHOLDERS = ("goal", "goal_file", "attempt", "feedback_file")
_MESSAGE_CHARS = 2_000
"""The most of the output's end a failed attempt's message quotes (its details keep more)."""
_NOT_FOUND = 127
"""The exit status of a program that could not be started (a shell's, and the sandbox's)."""


class CommandProvider:
    """Runs the tier's coding agent on the request's working copy, in the sandbox."""

    name = "command"

    def __init__(
        self,
        settings: TierSettings,
        *,
        backend: SandboxBackend,
        limits: Limits,
        secrets: Mapping[str, str] = {},
        root: Path,
    ) -> None:
        """``root``: the project's folder, which relative ``mounts`` start from. A tier
        without ``argv``, with an unknown placeholder or a mount that does not exist is a
        ConfigError naming the key."""
        if not settings.argv:
            raise ConfigError(
                "key 'argv': a command tier needs the agent's argv",
                hint='e.g. argv = ["aider", "--yes", "--message-file", "{goal_file}"]',
            )
        for arg in settings.argv:
            unknown = [n for n in _PLACEHOLDER.findall(arg) if n not in _PLACEHOLDERS]
            if unknown:
                raise ConfigError(
                    f"key 'argv': unknown placeholder {{{unknown[0]}}} in {arg!r}",
                    hint="the placeholders are "
                    + ", ".join(f"{{{name}}}" for name in _PLACEHOLDERS),
                )
        self.settings = settings
        self.argv = tuple(settings.argv)
        self.program = Path(settings.argv[0]).name
        """The agent's name, recorded as each attempt's model."""
        self.mounts = tuple(Mount(source=path) for path in _mount_paths(settings.mounts, root))
        self.egress = tuple(settings.egress) or None
        # The agent's CPU is bounded by its wall clock: most of it is waiting on a model.
        seconds = settings.timeout_seconds
        self.limits = replace(
            limits,
            timeout_seconds=seconds,
            cpu_seconds=max(limits.cpu_seconds, math.ceil(seconds)),
        )
        self.backend = backend
        self._secrets = dict(secrets)

    def generate(self, request: GenerationRequest) -> Generation:
        """Run the agent on ``request.workdir``; its changes stay there for the caller."""
        if request.workdir is None:
            raise ProviderError(
                f"the command tier ({self.program}) serves repository changes only, "
                f"and task {request.task_id} ({request.kind.name}) is not one",
                hint="route other job kinds to a model or template tier "
                "(generate.tier, generate.chain, or the job kind's tier)",
            )
        with tempfile.TemporaryDirectory(prefix="shipyard-agent-") as scratch:
            files, home = Path(scratch, "files"), Path(scratch, "home")
            for folder in (files, home, Path(scratch, "tmp")):
                folder.mkdir()
            seen = _Seen(home, isolated=self.backend.isolated)
            goal_file, feedback_file = _write_inputs(files, request)
            argv = [
                _expand(arg, request, seen.file(goal_file), seen.file(feedback_file))
                for arg in self.argv
            ]
            mounts = [
                *request.mounts,
                *self.mounts,
                Mount(source=files, target=FILES),
                Mount(source=home, target=HOME, writable=True),
            ]
            env = self._environment(request, seen, feedback_file)
            try:
                result = self.backend.run(
                    argv,
                    workdir=request.workdir,
                    limits=self.limits,
                    env=env,
                    mounts=mounts,
                    egress=self.egress,
                    in_place=True,
                )
            except SandboxError as exc:
                if not _cannot_start(exc):
                    raise
                raise self._not_found(str(exc)) from exc
        return self._outcome(result)

    def _environment(
        self, request: GenerationRequest, seen: _Seen, feedback_file: Path | None
    ) -> dict[str, str]:
        env = {
            name: value for name in self.settings.env if (value := read_key(name, self._secrets))
        }
        env |= {
            "HOME": seen.home,
            "SHIPYARD_GOAL": _goal(request),
            "SHIPYARD_ATTEMPT": str(request.attempt),
        }
        if seen.tmp:  # not the working copy, where an unconfined run's TMPDIR points
            env["TMPDIR"] = seen.tmp
        if feedback_file is not None:
            env["SHIPYARD_FEEDBACK"] = seen.file(feedback_file)
        return env

    def _outcome(self, result: RunResult) -> Generation:
        printed = result.stdout
        if printed and result.stderr and not printed.endswith("\n"):
            printed += "\n"
        output = _tail(printed + result.stderr) + _egress_lines(result)
        if result.exit_code == _NOT_FOUND and result.killed_by is None:
            raise self._not_found(output)
        ending = _ending(result)
        details = failure_details(
            self.name, self.program, reply=output, finish_reason=ending or "exit 0"
        )
        if ending is not None:
            last = "\n".join(output.strip().splitlines()[-15:])[-_MESSAGE_CHARS:]
            raise MalformedReply(
                f"the coding agent {self.program} {_ending_words(result, self.limits)}"
                + (f"; its output ended with:\n{last}" if last else " and printed nothing"),
                hint="the next attempt runs it again with this attempt's findings "
                "(SHIPYARD_FEEDBACK)",
                details=details,
            )
        return Generation(
            files={}, provider=self.name, model=self.program, reply=output, finish_reason="exit 0"
        )

    def _not_found(self, output: str) -> ProviderError:
        last = "\n".join(output.strip().splitlines()[-5:])
        return ProviderError(
            f"the coding agent {self.argv[0]!r} could not be started in the sandbox"
            + (f":\n{last}" if last else ""),
            hint="give argv[0] as an absolute path and list the agent's installation (and "
            "its interpreter) in the tier's mounts, e.g. mounts = "
            '["~/.local/share/uv/tools/aider-chat"]; the sandbox sees only the system and '
            "what is mounted",
            details=failure_details(self.name, self.program, reply=output),
        )


class _Seen:
    """Where the run sees the goal and feedback folder and the home folder."""

    def __init__(self, home: Path, *, isolated: bool) -> None:
        self._isolated = isolated
        self.home = HOME if isolated else str(home)
        self.tmp = "" if isolated else str(home.parent / "tmp")
        """'': the sandbox's own /tmp."""

    def file(self, path: Path | None) -> str:
        if path is None:
            return ""
        return f"{FILES}/{path.name}" if self._isolated else str(path)


def _goal(request: GenerationRequest) -> str:
    return request.goal or request.prompt


def _write_inputs(folder: Path, request: GenerationRequest) -> tuple[Path, Path | None]:
    """The goal's file, and on a repair the feedback's (with its JSON twin)."""
    goal = folder / "goal.txt"
    goal.write_text(_goal(request) + "\n", encoding="utf-8")
    if request.attempt <= 1:
        return goal, None
    feedback = folder / "feedback.txt"
    feedback.write_text(_feedback_text(request.feedback, request.attempt - 1), encoding="utf-8")
    twin = {
        "attempt": request.attempt - 1,
        "findings": [f.to_dict() | {"location": f.location()} for f in request.feedback],
    }
    Path(f"{feedback}.json").write_text(json.dumps(twin, indent=2) + "\n", encoding="utf-8")
    return goal, feedback


def _feedback_text(findings: Sequence[Finding], attempt: int) -> str:
    """The findings of ``attempt`` as a coding agent reads them: one per line."""
    if not findings:
        return f"Attempt {attempt} failed without findings; try the goal again.\n"
    lines = [f"Attempt {attempt} was checked and failed. Fix these and keep the goal:"]
    for finding in findings:
        where = f" {finding.location()}" if finding.location() else ""
        message = finding.message.strip().replace("\n", "\n    ")
        lines.append(f"- {finding.severity} {finding.rule}{where}: {message}")
    return "\n".join(lines) + "\n"


def _expand(arg: str, request: GenerationRequest, goal_file: str, feedback_file: str) -> str:
    values = {
        "goal": _goal(request),
        "goal_file": goal_file,
        "attempt": str(request.attempt),
        "feedback_file": feedback_file,
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), arg)


def _mount_paths(paths: Sequence[str], root: Path) -> list[Path]:
    found: list[Path] = []
    for written in paths:
        path = Path(written).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise ConfigError(
                f"key 'mounts': {written!r} does not exist (looked at {path})",
                hint="list the agent's installation and config files as they are on this "
                "machine (~ is your home folder; a relative path starts at shipyard.toml's)",
            )
        found.append(Path(os.path.abspath(path)))  # seen where written, links and all
    return found


def _cannot_start(error: SandboxError) -> bool:
    """True when the sandbox could not start the program itself (not: the run failed)."""
    cause = error.__cause__
    return isinstance(cause, FileNotFoundError | PermissionError | NotADirectoryError)


def _ending(result: RunResult) -> str | None:
    """None for a clean exit, else how the run ended (the attempt's finish reason)."""
    if result.killed_by:
        return f"killed: {result.killed_by}"
    if result.exit_code != 0:
        return f"exit {result.exit_code}"
    return None


def _ending_words(result: RunResult, limits: Limits) -> str:
    if result.killed_by == "timeout":
        return f"ran out of time (the tier's timeout_seconds, {limits.timeout_seconds:g} s)"
    if result.killed_by == "output":
        return (
            f"printed more than the sandbox keeps ({limits.max_output_bytes} bytes) and was stopped"
        )
    if result.killed_by:
        return f"was stopped by the sandbox's {result.killed_by} limit"
    if result.exit_code < 0:
        return f"was ended by signal {-result.exit_code}"
    return f"exited with status {result.exit_code}"


def _tail(text: str) -> str:
    if len(text) <= REPLY_CHARS:
        return text
    return f"[... {len(text) - REPLY_CHARS} characters cut ...]\n{text[-REPLY_CHARS:]}"


def _egress_lines(result: RunResult) -> str:
    """What the agent tried to reach through the egress proxy, one decision a line."""
    if not result.egress_log:
        return ""
    return "\n" + "".join(f"egress: {decision}\n" for decision in result.egress_log)
