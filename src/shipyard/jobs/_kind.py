"""Job kinds: what a repeatable kind of work takes, produces, must pass and where it goes.

A job kind is a folder::

    landing-page/
      job.toml             name, risk, publish, tier, input key, outputs, checks, release
      input.schema.json    JSON Schema of one task's inputs
      prompt.md.j2         the prompt a model would get (versioned by content hash)
      page.html.j2         code template(s) the template generator renders
      ...                  anything the checks need (tests, schemas), copied beside the output
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import ConfigError
from shipyard.model import Risk

__all__ = ["CheckSpec", "EffectSpec", "JobKind", "ProbeSpec", "ReleaseSpec", "load_job_kind"]

JOB_FILE = "job.toml"


class _CheckEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str


class _ProbeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(default="", description="under the release's URL; Jinja2 of the inputs")
    method: Literal["GET", "POST", "HEAD"] = "GET"
    body: Any = Field(default=None, description="JSON sent with a POST")
    status: int = Field(default=200, ge=100, le=599, description="the status that passes")
    contains: str = Field(default="", description="text the body must hold; Jinja2 of the inputs")
    max_ms: float = Field(default=2000, gt=0, description="slower than this fails")


class _ReleaseEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    target: str
    path: str = Field(description="Jinja2 template of the folder the files go to on the target")
    probes: list[_ProbeEntry] = Field(
        default_factory=list, description="HTTP checks sent to the candidate while it bakes"
    )


class _EffectEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    tool: str


class _JobFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    description: str = ""
    risk: Risk = Risk.MEDIUM
    publish: bool = Field(
        default=False,
        description="it reaches customers (policies read it; the built-in "
        "policy holds such work for one approval)",
    )
    input_key: str = Field(description="the input that names the subject (e.g. sku)")
    inline_scripts: bool | None = Field(
        default=None,
        description="whether its HTML pages may run script of their own (inline <script>, "
        "event-handler attributes, javascript: URLs); default: not when publish is true",
    )
    max_attempts: int = Field(default=3, ge=1, le=10)
    tier: str = Field(default="", description="tier, 'auto' or 'human'; empty: generate.tier")
    on_exhausted: Literal["fail", "person"] = Field(
        default="fail", description="when repairs run out: fail, or ask a person for the code"
    )
    input_schema: str = "input.schema.json"
    prompt: str = "prompt.md.j2"
    outputs: dict[str, str] = Field(min_length=1, description="output file -> code template")
    checks: list[_CheckEntry] = Field(min_length=1)
    release: _ReleaseEntry | None = None
    effects: list[_EffectEntry] = Field(
        default_factory=list, description="tool calls after the release, in order"
    )


@dataclass(frozen=True, kw_only=True)
class CheckSpec:
    """One check a job kind's output must pass, with its options."""

    name: str
    """The check plugin's name (``html``, ``pytest``, ...)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Plugin options from job.toml; paths are relative to the job kind's folder."""


@dataclass(frozen=True, kw_only=True)
class ReleaseSpec:
    """Where a job kind's artifact goes when it is released."""

    target: str
    """A target named in shipyard.toml's [targets]."""
    path: str
    """Jinja2 template (rendered with the inputs) of the folder on the target."""
    probes: tuple[ProbeSpec, ...] = ()
    """Synthetic HTTP checks of the candidate during a canary."""


@dataclass(frozen=True, kw_only=True)
class ProbeSpec:
    """One synthetic HTTP check of a release candidate (strings are templates of the inputs)."""

    path: str = ""
    method: str = "GET"
    body: Any = None
    status: int = 200
    contains: str = ""
    max_ms: float = 2000.0


@dataclass(frozen=True, kw_only=True)
class EffectSpec:
    """A tool call a job kind makes after its release (a saga step)."""

    tool: str
    """The tool's registry name (``http`` ...)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Its arguments; strings are Jinja2 templates of the inputs and ``release``."""


@dataclass(frozen=True, kw_only=True)
class JobKind:
    """A loaded, validated job kind."""

    name: str
    """Unique in the project."""
    domain: str
    """The domain that owns it (its queue, budget, memory namespace)."""
    folder: Path
    """Where its definition lives; copied into the check workspace as ``_job/``."""
    description: str
    """One line for people."""
    risk: Risk
    """How much harm a bad output could do; the gate reads it."""
    publish: bool
    """True when its output reaches customers; policies read it (``resource.publish``)."""
    input_key: str
    """The input naming the subject, used for recall, lineage and artifact listings."""
    max_attempts: int
    """Bound on the repair loop."""
    tier: str
    """The tier that writes it (``auto``, ``human``, or a [tiers] name); '' for the default."""
    on_exhausted: str = "fail"
    """``person``: when every repair failed, a person is asked for the code (one more
    attempt) instead of the task failing."""
    input_schema: dict[str, Any]
    """JSON Schema of one task's inputs."""
    prompt_template: str
    """Source of the prompt template."""
    outputs: dict[str, str]
    """Output file name -> source of the code template that renders it."""
    checks: tuple[CheckSpec, ...]
    """What the output must pass, in order."""
    release: ReleaseSpec | None
    """Where it is released, or None for artifacts that are only stored."""
    effects: tuple[EffectSpec, ...] = ()
    """Tool calls after the release, in order; undone in reverse if a later one fails."""
    inline_scripts: bool = False
    """Whether its HTML pages may run script of their own (the ``html`` check reads it):
    ``inline_scripts`` in job.toml, by default false for work that reaches customers."""

    @property
    def template_hash(self) -> str:
        """Content hash of the prompt and code templates: the prompt version in provenance."""
        digest = hashlib.sha256()
        digest.update(self.prompt_template.encode())
        for name in sorted(self.outputs):
            digest.update(name.encode() + b"\0" + self.outputs[name].encode() + b"\0")
        return "sha256:" + digest.hexdigest()


def _read(folder: Path, name: str, what: str) -> str:
    path = folder / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{folder / JOB_FILE}: {what} {name!r} not found in {folder}",
            hint=f"create {path} or change the key in {JOB_FILE}",
        ) from exc


def load_job_kind(folder: Path, *, domain: str) -> JobKind:
    """Read and validate the job kind in ``folder``; ConfigError names file, key and fix."""
    spec = _read_job_file(folder / JOB_FILE)
    schema = _read_input_schema(folder, spec)
    scripts = spec.inline_scripts if spec.inline_scripts is not None else not spec.publish
    return JobKind(
        name=spec.name,
        domain=domain,
        folder=folder.resolve(),
        description=spec.description,
        risk=spec.risk,
        publish=spec.publish,
        input_key=spec.input_key,
        max_attempts=spec.max_attempts,
        tier=spec.tier,
        on_exhausted=spec.on_exhausted,
        input_schema=schema,
        prompt_template=_read(folder, spec.prompt, "prompt template"),
        outputs={out: _read(folder, tpl, "code template") for out, tpl in spec.outputs.items()},
        checks=tuple(_check_spec(c, scripts) for c in spec.checks),
        inline_scripts=scripts,
        release=_release_spec(spec.release) if spec.release else None,
        effects=tuple(
            EffectSpec(tool=e.tool, options=dict(e.model_extra or {})) for e in spec.effects
        ),
    )


def _check_spec(entry: _CheckEntry, inline_scripts: bool) -> CheckSpec:
    """A check as job.toml declares it; the ``html`` check also gets the job kind's
    ``inline_scripts`` (unless its own entry sets it)."""
    options = dict(entry.model_extra or {})
    if entry.name == "html":
        options.setdefault("inline_scripts", inline_scripts)
    return CheckSpec(name=entry.name, options=options)


def _read_job_file(job_file: Path) -> _JobFile:
    """``job.toml`` parsed and validated against :class:`_JobFile`."""
    try:
        raw = tomllib.loads(job_file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{job_file}: no such file", hint="each job kind folder needs a job.toml"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{job_file}: not valid TOML: {exc}", hint="fix the syntax") from exc
    try:
        return _JobFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{job_file}: key {key!r}: {first['msg']}",
            hint=f"allowed keys: {', '.join(sorted(_JobFile.model_fields))}",
        ) from exc


def _read_input_schema(folder: Path, spec: _JobFile) -> dict[str, Any]:
    """The job kind's input schema: valid JSON Schema, with ``input_key`` among its
    properties."""
    schema_text = _read(folder, spec.input_schema, "input schema")
    try:
        schema: dict[str, Any] = json.loads(schema_text)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (json.JSONDecodeError, jsonschema.SchemaError) as exc:
        raise ConfigError(
            f"{folder / spec.input_schema}: not a valid JSON Schema: {exc}",
            hint="fix the schema (JSON Schema draft 2020-12)",
        ) from exc
    if spec.input_key not in schema.get("properties", {}):
        raise ConfigError(
            f"{folder / JOB_FILE}: key 'input_key': {spec.input_key!r} is not a property of "
            "the schema",
            hint=f"choose one of: {', '.join(schema.get('properties', {}))}",
        )
    return schema


def _release_spec(entry: _ReleaseEntry) -> ReleaseSpec:
    return ReleaseSpec(
        target=entry.target,
        path=entry.path,
        probes=tuple(ProbeSpec(**p.model_dump()) for p in entry.probes),
    )
