"""The one Jinja2 environment for prompts, code templates and release paths.

Templates are sandboxed (they come from project files, inputs are untrusted) and HTML/XML
outputs are autoescaped, so a product name cannot inject markup.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from jinja2 import StrictUndefined, TemplateError
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


def render(source: str, context: dict[str, Any], *, name: str, where: str) -> str:
    """Render ``source``; ``name`` (e.g. ``index.html``) decides autoescaping."""
    env = _environment(name.rsplit(".", 1)[-1].lower() in _ESCAPED)
    try:
        return env.from_string(source).render(context)
    except TemplateError as exc:
        raise ConfigError(
            f"{where}: template error while rendering {name!r}: {exc}",
            hint="fix the template (undefined names are errors, not blanks)",
        ) from exc
