"""The one Jinja2 environment for prompts, code templates and release paths.

Templates are sandboxed (they come from project files, inputs are untrusted) and HTML/XML
outputs are autoescaped, so a product name cannot inject markup.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from shipyard.errors import ConfigError

__all__ = ["render", "slugify"]


def slugify(value: Any) -> str:
    """ASCII, lowercase, dash-separated: safe for URLs and folder names."""
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item"


_ESCAPED = ("html", "htm", "xml", "svg")


def _environment(autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )
    env.filters["slug"] = slugify
    env.filters["money"] = lambda v: f"{float(v):,.2f}"
    return env


_ENVIRONMENTS = {escaped: _environment(escaped) for escaped in (False, True)}


@functools.lru_cache(maxsize=512)
def _compiled(source: str, escaped: bool) -> Template:
    """Compiled once per process: every task of a job kind renders the same templates."""
    return _ENVIRONMENTS[escaped].from_string(source)


def render(source: str, context: dict[str, Any], *, name: str, where: str) -> str:
    """Render ``source``; ``name`` (e.g. ``index.html``) decides autoescaping."""
    try:
        return _compiled(source, name.rsplit(".", 1)[-1].lower() in _ESCAPED).render(context)
    except TemplateError as exc:
        raise ConfigError(
            f"{where}: template error while rendering {name!r}: {exc}",
            hint="fix the template (undefined names are errors, not blanks)",
        ) from exc
