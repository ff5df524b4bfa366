"""Check probes that run *inside* the sandbox: ``python -I -m shipyard.checks._probe NAME OPTIONS``.

Each probe reads the workspace (the current folder), prints one JSON list of findings on
stdout and exits 0; a crash exits non-zero and the host records the check as failed. Only
the standard library, html5lib and jsonschema are imported here.
"""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

JOB_DIR = "_job"


def _finding(rule: str, message: str, file: str = "", line: int = 0) -> dict[str, Any]:
    return {"rule": rule, "message": message, "file": file, "line": line, "severity": "error"}


def _outputs(suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        p
        for p in Path(".").rglob("*")
        if p.is_file() and p.suffix.lower() in suffixes and p.parts[0] != JOB_DIR
    )


def probe_compile(_options: dict[str, Any]) -> list[dict[str, Any]]:
    findings = []
    for path in _outputs((".py",)):
        try:
            compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            findings.append(_finding("compile.syntax", exc.msg, str(path), exc.lineno or 0))
    return findings


_JS_TYPES = frozenset(
    {
        "", "module", "text/javascript", "application/javascript", "text/ecmascript",
        "application/ecmascript", "application/x-javascript", "application/x-ecmascript",
        "text/x-javascript", "text/x-ecmascript", "text/jscript", "text/livescript",
        "text/javascript1.0", "text/javascript1.1", "text/javascript1.2", "text/javascript1.3",
        "text/javascript1.4", "text/javascript1.5",
    }
)  # fmt: skip
"""``type`` values of a <script> a browser runs (any other is a data block, like JSON-LD)."""

_URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "xlink:href", "data"})


def _runs(attrs: dict[str, str | None]) -> bool:
    """Whether a <script> with ``attrs`` would run (rather than hold data)."""
    kind = (attrs.get("type") or "").split(";")[0].strip().lower()
    return kind in _JS_TYPES


def _javascript_url(value: str) -> bool:
    # Browsers drop tabs and newlines from URLs and leading spaces and controls.
    cleaned = "".join(c for c in value if c not in "\t\n\r").lstrip(" \x00\x0b\x0c")
    return cleaned.lower().startswith("javascript:")


class _Structure(HTMLParser):
    """Collects what the html rules need, with line numbers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[tuple[int, dict[str, str | None]]] = []
        self.scripts: list[tuple[int, dict[str, str | None]]] = []
        self.jsonld: list[tuple[int, str]] = []
        self.script_attributes: list[tuple[int, str, str]] = []
        """(line, tag, attribute) of event handlers, javascript: URLs and srcdoc."""
        self.title = False
        self._in_jsonld: int | None = None
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        values = dict(attrs)
        for name, value in attrs:
            if (
                name.startswith("on")
                or name == "srcdoc"
                or (name in _URL_ATTRIBUTES and _javascript_url(value or ""))
            ):
                self.script_attributes.append((line, tag, name))
        if tag == "img":
            self.images.append((line, values))
        elif tag == "script":
            self.scripts.append((line, values))
            if (values.get("type") or "").lower() == "application/ld+json":
                self._in_jsonld, self._buffer = line, []
        elif tag == "title":
            self.title = True

    def handle_data(self, data: str) -> None:
        if self._in_jsonld is not None:
            self._buffer.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_jsonld is not None:
            self.jsonld.append((self._in_jsonld, "".join(self._buffer)))
            self._in_jsonld = None


def _structure(path: Path) -> _Structure:
    parser = _Structure()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def probe_html(options: dict[str, Any]) -> list[dict[str, Any]]:
    import html5lib

    findings = []
    pages = _outputs((".html", ".htm"))
    if not pages:
        return [_finding("html.missing", "no .html file in the output")]
    for path in pages:
        name = str(path)
        text = path.read_text(encoding="utf-8", errors="replace")
        parser = html5lib.HTMLParser(strict=False)
        parser.parse(text)
        for (line, _col), code, _data in parser.errors[:20]:
            findings.append(_finding("html.parse", f"HTML parse error: {code}", name, line))
        page = _structure(path)
        if not page.title:
            findings.append(_finding("html.title", "the page has no <title>", name))
        for line, attrs in page.images:
            if not (attrs.get("alt") or "").strip():
                src = attrs.get("src") or "?"
                findings.append(
                    _finding("html.img-alt", f"<img src={src!r}> has no alt text", name, line)
                )
        findings += _script_findings(page, name, options)
        for line, body in page.jsonld:
            try:
                json.loads(body)
            except json.JSONDecodeError as exc:
                findings.append(
                    _finding("html.jsonld", f"JSON-LD is not JSON: {exc.msg}", name, line)
                )
    return findings


def _script_findings(page: _Structure, name: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """External scripts from origins not allowed; and, unless ``inline_scripts`` is true,
    anything else on the page that would run script: inline <script>, scripts of the site's
    own files, event-handler attributes, ``javascript:`` URLs, ``srcdoc`` frames."""
    findings = []
    allowed = tuple(options.get("allowed_script_origins", ()))
    may_run = bool(options.get("inline_scripts", True))
    for line, attrs in page.scripts:
        src = (attrs.get("src") or "").strip()
        external = src.startswith(("http://", "https://", "//"))
        if external and not src.startswith(allowed or ("\0",)):
            findings.append(
                _finding("html.external-script", f"external script {src!r}", name, line)
            )
        elif not external and not may_run and _runs(attrs):
            what = f"a script from {src!r}" if src else "an inline <script>"
            findings.append(_finding("html.inline-script", _NO_SCRIPT.format(what), name, line))
    if not may_run:
        for line, tag, attribute in page.script_attributes:
            what = f"<{tag} {attribute}=...> runs script"
            findings.append(_finding("html.script-attribute", _NO_SCRIPT.format(what), name, line))
    return findings


_NO_SCRIPT = (
    "{} and this job kind's pages may not run script (set inline_scripts = true in "
    "job.toml to allow it)"
)


def _jsonld_documents() -> list[tuple[str, int, Any]]:
    documents: list[tuple[str, int, Any]] = []
    for path in _outputs((".html", ".htm")):
        for line, body in _structure(path).jsonld:
            try:
                documents.append((str(path), line, json.loads(body)))
            except json.JSONDecodeError:
                continue  # the html probe reports it
    for path in _outputs((".jsonld",)):
        documents.append((str(path), 1, json.loads(path.read_text(encoding="utf-8"))))
    return documents


def probe_jsonld(options: dict[str, Any]) -> list[dict[str, Any]]:
    import jsonschema

    wanted = options.get("type", "")
    schema_file = options.get("schema", "")
    schema = json.loads((Path(JOB_DIR) / schema_file).read_text()) if schema_file else None
    findings = []
    documents = _jsonld_documents()
    typed = [d for d in documents if not wanted or d[2].get("@type") == wanted]
    if not typed:
        what = f"JSON-LD object of @type {wanted!r}" if wanted else "JSON-LD at all"
        return [_finding("jsonld.missing", f"the output has no {what}")]
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        for name, line, document in typed:
            for error in validator.iter_errors(document):
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                findings.append(_finding("jsonld.schema", f"{where}: {error.message}", name, line))
    return findings


def _inside(name: str) -> bool:
    """True for a relative path (or glob) that cannot climb out of where it is applied."""
    path = Path(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts


def _matching(patterns: list[str]) -> list[Path]:
    found = {
        path
        for pattern in patterns
        for path in Path(".").glob(pattern)
        if path.is_file() and path.parts[0] != JOB_DIR
    }
    return sorted(found)


MAX_SCHEMA_ERRORS = 50
"""Validation errors reported per file; the rest are counted."""


def probe_jsonschema(options: dict[str, Any]) -> list[dict[str, Any]]:
    import jsonschema

    schema_name = options.get("schema")
    patterns = options.get("files", ["*.json"])
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(schema_name, str) or not _inside(schema_name):
        message = "option 'schema' must be a relative path inside the job kind's folder"
        return [_finding("jsonschema.config", message)]
    if (
        not isinstance(patterns, list)
        or not patterns
        or not all(isinstance(p, str) and _inside(p) for p in patterns)
    ):
        message = "option 'files' must be a list of relative glob patterns such as ['*.json']"
        return [_finding("jsonschema.config", message)]
    try:
        schema = json.loads((Path(JOB_DIR) / schema_name).read_text(encoding="utf-8"))
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        validator_class.check_schema(schema)
    except (OSError, ValueError, TypeError, RecursionError, jsonschema.SchemaError) as exc:
        message = f"schema {schema_name!r} is not usable: {str(exc).splitlines()[0][:300]}"
        return [_finding("jsonschema.config", message)]
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    files = _matching(patterns)
    if not files:
        return [_finding("jsonschema.missing", f"no output file matches {patterns}")]
    findings = []
    for path in files:
        name = str(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            findings.append(_finding("jsonschema.parse", f"not JSON: {exc.msg}", name, exc.lineno))
            continue
        except (UnicodeDecodeError, RecursionError) as exc:
            findings.append(_finding("jsonschema.parse", f"not JSON: {exc}", name))
            continue
        try:
            errors = sorted(validator.iter_errors(document), key=lambda e: e.json_path)
        except Exception as exc:  # an unresolvable $ref, a schema too deep to apply
            message = f"schema {schema_name!r} could not be applied: {str(exc)[:300]}"
            findings.append(_finding("jsonschema.config", message, name))
            continue
        for error in errors[:MAX_SCHEMA_ERRORS]:
            message = f"{error.json_path}: {error.message[:300]}"
            findings.append(_finding("jsonschema.invalid", message, name))
        if len(errors) > MAX_SCHEMA_ERRORS:
            more = len(errors) - MAX_SCHEMA_ERRORS
            findings.append(_finding("jsonschema.invalid", f"{more} more errors", name))
    return findings


PROBES = {
    "compile": probe_compile,
    "html": probe_html,
    "jsonld": probe_jsonld,
    "jsonschema": probe_jsonschema,
}


def main() -> int:
    name, options = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    json.dump(PROBES[name](options), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
