"""Built-in tools: publish to a release target, call an HTTP API, and push a released
branch to a git remote."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError, ToolError
from shipyard.release import StaticSite, Target

__all__ = ["GitPushTool", "HttpTool", "PublishTool", "push_environment"]


class PublishTool:
    """Put an artifact's files live on a target; undone by withdrawing them.

    A release that baked as a canary is promoted; one that did not is deployed and promoted
    in one go (on a static site, a single atomic switch).
    """

    name = "publish"
    capability = "publish"
    reversible = True

    def __init__(
        self,
        target: Callable[[str], Target],
        artifact_files: Callable[[str], Mapping[str, bytes]],
    ) -> None:
        self._target, self._files = target, artifact_files

    def call(self, args: dict[str, Any], *, key: str) -> dict[str, Any]:
        """args: target, path, title, artifact (its files are read from the store), release_key."""
        target = self._target(str(args["target"]))
        key = str(args["release_key"])
        if target.health(key) is not None:  # not deployed as a candidate: deploy it now
            files = self._files(str(args["artifact"]))
            if isinstance(target, StaticSite):
                result = target.publish(
                    key=key, path=str(args["path"]), files=files, title=str(args["title"])
                )
                return {
                    "target": target.name,
                    "version": result.version,
                    "url_path": result.url_path,
                    "already_live": result.already_live,
                }
            target.deploy(
                key=key,
                path=str(args["path"]),
                files=files,
                title=str(args["title"]),
                artifact=str(args["artifact"]),
            )
        promoted = target.promote(key)
        return {
            "target": target.name,
            "version": promoted.version,
            "url_path": promoted.url_path,
            "already_live": promoted.already,
        }

    def compensate(
        self, args: dict[str, Any], result: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        version = self._target(str(args["target"])).withdraw(str(args["release_key"]))
        if version is None:
            return {"withdrawn": False, "note": "not live any more"}
        return {"withdrawn": True, "version": version}


_TRANSIENT = {408, 409, 425, 429, 500, 502, 503, 504}


class HttpTool:
    """Send a JSON request; the key goes along as ``Idempotency-Key``.

    Options: ``url``, ``method`` (POST), ``body`` (JSON), ``headers``; ``undo_url`` (and
    ``undo_method``, POST) makes it reversible: the compensation sends ``{"key", "result"}``
    there with ``Idempotency-Key: KEY:undo``. Transient failures (timeouts, 408/409/425/429,
    5xx) are retried three times with backoff; any other status is a failure at once.
    """

    name = "http"
    capability = "http"
    reversible = True

    def __init__(self, *, timeout: float = 15.0, tries: int = 3) -> None:
        self.timeout, self.tries = timeout, tries

    def call(self, args: dict[str, Any], *, key: str) -> dict[str, Any]:
        return self._send(
            str(args["url"]),
            str(args.get("method", "POST")),
            args.get("body", {}),
            dict(args.get("headers", {})),
            key,
        )

    def compensate(
        self, args: dict[str, Any], result: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        undo = args.get("undo_url")
        if not undo:
            raise ToolError(
                f"the http call to {args['url']} has no undo_url: it cannot be compensated",
                hint="give the effect an undo_url to make it reversible",
            )
        return self._send(
            str(undo),
            str(args.get("undo_method", "POST")),
            {"key": key, "result": result},
            dict(args.get("headers", {})),
            f"{key}:undo",
        )

    def _send(
        self, url: str, method: str, body: Any, headers: dict[str, str], key: str
    ) -> dict[str, Any]:
        if not url.startswith(("http://", "https://")):
            raise ToolError(
                f"http tool: {url!r} is not an http(s) URL", hint="fix the effect's url"
            )
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(1, self.tries + 1):
            request = urllib.request.Request(
                url,
                data=data,
                method=method.upper(),
                headers={"Content-Type": "application/json", "Idempotency-Key": key, **headers},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    text = response.read(65536).decode("utf-8", "replace")
                    return {"status": response.status, "body": text[:2000]}
            except urllib.error.HTTPError as exc:
                last = f"{method.upper()} {url}: HTTP {exc.code}"
                if exc.code not in _TRANSIENT:
                    raise ToolError(last, hint="the server refused the request") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{method.upper()} {url}: {getattr(exc, 'reason', exc)}"
            if attempt < self.tries:
                time.sleep(0.5 * 2 ** (attempt - 1))
        raise ToolError(f"{last} (after {self.tries} tries)", hint="check that the service is up")


def push_environment() -> dict[str, str]:
    """The environment ``git-push`` runs git with: no system or global configuration,
    ``LC_ALL=C``, no replace refs, and no prompts (git's own, and ssh's in batch mode); an
    SSH agent is reachable when one is running."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }
    if "SSH_AUTH_SOCK" in os.environ:
        env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
    return env


_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_RELEASE_BRANCH = "shipyard/"


@dataclass(frozen=True, kw_only=True)
class _Push:
    """A ``git-push`` call's arguments."""

    repository: Path
    """The local repository (or mirror) the branches are read from."""
    remote: str
    """A remote's name in that repository, or a URL."""
    branch: str
    """The released branch, ``shipyard/<task>``."""
    merge_to: str | None
    """The branch the release was merged into, pushed too when given."""

    @classmethod
    def of(cls, args: Mapping[str, Any]) -> _Push:
        missing = [k for k in ("repository", "remote", "branch") if not args.get(k)]
        if missing:
            raise ToolError(
                f"git-push: {', '.join(missing)} not given",
                hint="give the effect repository, remote and branch (and merge_to, optionally)",
            )
        remote = str(args["remote"])
        if remote.startswith("-"):
            raise ToolError(
                f"git-push: {remote!r} is not a remote", hint="name a remote or give its URL"
            )
        merge_to = str(args.get("merge_to") or "") or None
        return cls(
            repository=Path(str(args["repository"])),
            remote=remote,
            branch=str(args["branch"]),
            merge_to=merge_to,
        )

    @property
    def branches(self) -> list[str]:
        return list(dict.fromkeys([self.branch, *([self.merge_to] if self.merge_to else [])]))


class GitPushTool:
    """Push a released branch, and the branch it was merged into, to a git remote.

    Options: ``repository`` (the local repository or mirror holding them), ``remote`` (a
    remote's name there, or a URL), ``branch`` (``shipyard/<task>``) and ``merge_to``. Each
    branch is pushed with an explicit refspec and never forced, so a remote whose branch
    moved on refuses the push (a ToolError with the remote's words); what the remote already
    has is a success that says so. The compensation deletes the pushed ``shipyard/`` branch
    from the remote while it still holds what was pushed, and never touches ``merge_to``.
    ``env`` replaces :func:`push_environment` (e.g. to reach a remote with the user's
    credential helpers).
    """

    name = "git-push"
    capability = "push"
    reversible = True

    def __init__(self, *, env: Mapping[str, str] | None = None, timeout: float = 300.0) -> None:
        self._env = dict(env) if env is not None else push_environment()
        self.timeout = timeout

    def call(self, args: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Push ``branch`` (and ``merge_to``); ``{"pushed": [...], "already": [...]}`` name
        the branches, ``commits`` what each holds."""
        push = _Push.of(args)
        git_dir = self._git_dir(push)
        local = {branch: self._local(git_dir, push, branch) for branch in push.branches}
        remote = self._remote_heads(git_dir, push, push.branches)
        already = [b for b in push.branches if self._holds(git_dir, push, remote.get(b), local[b])]
        pushed = [b for b in push.branches if b not in already]
        if pushed:
            self._push(git_dir, push, [f"{local[b]}:refs/heads/{b}" for b in pushed])
        return {
            "remote": push.remote,
            "pushed": pushed,
            "already": already,
            "commits": local,
        }

    def compensate(
        self, args: dict[str, Any], result: dict[str, Any], *, key: str, reason: str = ""
    ) -> dict[str, Any]:
        """Delete the pushed ``shipyard/`` branch from the remote if it still holds the
        commit pushed; ``merge_to`` is left alone (the note says so)."""
        push = _Push.of(args)
        deleted, notes = self._delete_branch(push, result)
        if push.merge_to:
            notes.append(
                f"{push.merge_to} on {push.remote} is left as it is (Shipyard never rewrites "
                "it): the change stays there until a revert is pushed"
            )
        out: dict[str, Any] = {
            "remote": push.remote,
            "branch": push.branch,
            "deleted": deleted,
            "note": "; ".join(notes),
        }
        if reason:
            out["reason"] = reason
        return out

    def _delete_branch(self, push: _Push, result: Mapping[str, Any]) -> tuple[bool, list[str]]:
        branch = push.branch
        if not branch.startswith(_RELEASE_BRANCH):
            return False, [f"{branch} is not a release branch ({_RELEASE_BRANCH}...): kept"]
        git_dir = self._git_dir(push)
        commits = result.get("commits")
        pushed = str(commits.get(branch, "")) if isinstance(commits, Mapping) else ""
        if not pushed:
            return False, [f"nothing recorded as pushed to {branch}: kept"]
        now = self._remote_heads(git_dir, push, [branch]).get(branch)
        if now is None:
            return False, [f"{branch} is not on {push.remote} (deleted already)"]
        if now != pushed:
            return False, [
                f"{branch} on {push.remote} moved to {now[:12]} since Shipyard pushed "
                f"{pushed[:12]}: kept"
            ]
        # The lease makes the delete a compare-and-swap: a push in between is not lost.
        lease = f"--force-with-lease=refs/heads/{branch}:{pushed}"
        done = self._git(
            git_dir,
            push,
            ["push", "--porcelain", "--no-verify", "--delete", lease, "--end-of-options"],
            [push.remote, f"refs/heads/{branch}"],
            ok=range(256),
        )
        if done.returncode != 0:
            if _rejected(done):
                return False, [f"{branch} on {push.remote} moved while deleting it: kept"]
            raise _push_failed(push, "deleting " + branch, done)
        return True, [f"{branch} deleted from {push.remote}"]

    # -- git -------------------------------------------------------------------------------

    def _git(
        self,
        git_dir: Path | None,
        push: _Push,
        command: list[str],
        operands: Sequence[str] = (),
        ok: Collection[int] = (0,),
    ) -> subprocess.CompletedProcess[bytes]:
        where = [f"--git-dir={git_dir}"] if git_dir else []
        # No hooks of the local repository run, no ext:: transport, and a mirror clone's
        # remote.NAME.mirror does not turn an explicit refspec into --mirror.
        safe = ["-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never"]
        if _NAME.match(push.remote):
            safe += ["-c", f"remote.{push.remote}.mirror=false"]
        argv = ["git", *where, *safe, *command, *operands]
        cwd = git_dir or push.repository
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                cwd=cwd,
                env=self._env,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            if not cwd.is_dir():
                raise ToolError(
                    f"git-push: repository {cwd} does not exist",
                    hint="give the effect the folder of the repository (or mirror) released to",
                ) from exc
            raise ConfigError(
                "git is not installed (or not on PATH)", hint="install git to push branches"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ToolError(
                f"git-push: git {command[0]} with {push.remote} took longer than "
                f"{self.timeout:g} s",
                hint="check that the remote is reachable (network, credentials without prompts)",
            ) from exc
        if done.returncode not in ok:
            raise _push_failed(push, f"git {command[0]}", done)
        return done

    def _git_dir(self, push: _Push) -> Path:
        if not push.repository.is_dir():
            raise ToolError(
                f"git-push: repository {push.repository} does not exist",
                hint="give the effect the folder of the repository (or mirror) released to",
            )
        done = self._git(None, push, ["rev-parse", "--absolute-git-dir"], ok=range(256))
        if done.returncode != 0:
            raise ToolError(
                f"git-push: {push.repository} is not a git repository",
                hint="give the effect the folder of the repository (or mirror) released to",
            )
        return Path(done.stdout.decode().strip())

    def _local(self, git_dir: Path, push: _Push, branch: str) -> str:
        ref = f"refs/heads/{branch}"
        if self._git(git_dir, push, ["check-ref-format", ref], ok=range(256)).returncode != 0:
            raise ToolError(
                f"git-push: {branch!r} is not a branch name", hint="fix the effect's branch"
            )
        done = self._git(
            git_dir, push, ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], ok=(0, 1)
        )
        sha = done.stdout.decode().strip()
        if not sha:
            raise ToolError(
                f"git-push: branch {branch} is not in {push.repository}, so there is nothing "
                "to push",
                hint="release the change first (its publish step writes the branch)",
            )
        return sha

    def _remote_heads(self, git_dir: Path, push: _Push, branches: list[str]) -> dict[str, str]:
        """What the remote's ``branches`` hold now (absent ones are left out)."""
        refs = [f"refs/heads/{b}" for b in branches]
        done = self._git(git_dir, push, ["ls-remote", "--end-of-options"], [push.remote, *refs])
        heads: dict[str, str] = {}
        for line in done.stdout.decode(errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            if ref in refs:  # ls-remote matches patterns by their tail
                heads[ref.removeprefix("refs/heads/")] = sha
        return heads

    def _holds(self, git_dir: Path, push: _Push, remote: str | None, local: str) -> bool:
        """True when the remote's branch is ``local`` or already contains it."""
        if remote is None:
            return False
        if remote == local:
            return True
        contains = ["merge-base", "--is-ancestor", local, remote]
        # Exit 128 when the remote's commit is not here: then it cannot contain ours.
        return self._git(git_dir, push, contains, ok=range(256)).returncode == 0

    def _push(self, git_dir: Path, push: _Push, refspecs: list[str]) -> None:
        options = ["--porcelain", "--no-verify", "--no-follow-tags", "--recurse-submodules=no"]
        done = self._git(
            git_dir,
            push,
            ["push", *options, "--no-signed", "--end-of-options"],
            [push.remote, *refspecs],
            ok=range(256),
        )
        if done.returncode == 0:
            return
        rejected = _rejected(done)
        if not rejected:
            raise _push_failed(push, "git push", done)
        said = _remote_lines(done)
        raise ToolError(
            f"git-push: {push.remote} refused {', '.join(rejected)}"
            + (f" ({'; '.join(said)})" if said else ""),
            hint="the remote's branch moved on since the change was released, and Shipyard "
            "never force-pushes: look at the remote's branch, then release the change again "
            "from its new head (or merge it by hand)",
            details={"rejected": rejected, "stderr": done.stderr.decode(errors="replace")[-4000:]},
        )


def _rejected(done: subprocess.CompletedProcess[bytes]) -> list[str]:
    """``refs/heads/X [rejected] (why)`` for each ref the remote refused."""
    out = []
    for line in done.stdout.decode(errors="replace").splitlines():
        flag, _, rest = line.partition("\t")
        if flag == "!":
            spec, _, summary = rest.partition("\t")
            ref = spec.rpartition(":")[2].removeprefix("refs/heads/")
            out.append(f"{ref} {summary}".strip())
    return out


def _remote_lines(done: subprocess.CompletedProcess[bytes]) -> list[str]:
    """What the remote itself said (its hooks' ``remote:`` lines)."""
    lines = done.stderr.decode(errors="replace").splitlines()
    said = [line.removeprefix("remote:").strip() for line in lines if line.startswith("remote:")]
    return [line for line in said if line][:10]


def _push_failed(push: _Push, what: str, done: subprocess.CompletedProcess[bytes]) -> ToolError:
    stderr = done.stderr.decode(errors="replace").strip()
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = next((line for line in lines if line.startswith("fatal:")), lines[-1] if lines else "")
    return ToolError(
        f"git-push: {what} with {push.remote} failed: {last or f'exit {done.returncode}'}",
        hint="check the remote's URL or name, that it is reachable, and that Shipyard can "
        "authenticate to it without a prompt",
        details={"stderr": stderr[-4000:]},
    )
