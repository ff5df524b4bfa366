"""``/api/v1/docs``: the API's reference, one HTML page rendered here from the OpenAPI
document, with no script at all.

Why not Swagger UI: its page runs a large third-party script on the origin where tokens are
typed and the console's session lives, wants inline script and styles that the strict
Content-Security-Policy forbids, and (as FastAPI serves it) comes from a CDN. The document
itself is at ``/api/v1/openapi.json``; point any OpenAPI tool at it for an interactive client.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", include_in_schema=False)

_METHODS = ("get", "post", "put", "patch", "delete")


def _schema_name(schema: dict[str, Any]) -> str:
    ref = str(schema.get("$ref", ""))
    if ref:
        return ref.rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items', {}))}"
    return str(schema.get("type", "object"))


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    params = "".join(
        f"<li><code>{escape(p['name'])}</code> ({escape(p.get('in', ''))}"
        f"{', required' if p.get('required') else ''}): "
        f"{escape(p.get('description', '') or _schema_name(p.get('schema', {})))}</li>"
        for p in op.get("parameters", [])
    )
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    answers = "".join(
        f"<li><code>{escape(status)}</code> {escape(str(r.get('description', '')))}</li>"
        for status, r in sorted(op.get("responses", {}).items())
    )
    return (
        f'<section id="{escape(op.get("operationId", ""))}">'
        f"<h3><code>{method.upper()} {escape(path)}</code></h3>"
        f"<p>{escape(op.get('description') or op.get('summary', ''))}</p>"
        + (f"<p>Parameters:</p><ul>{params}</ul>" if params else "")
        + (
            f"<p>Body: <code>{escape(_schema_name(body.get('schema', {})))}</code></p>"
            if body
            else ""
        )
        + f"<p>Answers:</p><ul>{answers}</ul></section>"
    )


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """The reference page (no token needed: it says what the routes are, nothing more)."""
    document: dict[str, Any] = request.app.openapi()
    info = document.get("info", {})
    sections = [
        _operation(path, method, op)
        for path, operations in document.get("paths", {}).items()
        for method, op in operations.items()
        if method in _METHODS
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info.get('title', 'API'))} API</title></head><body>"
        f"<h1>{escape(info.get('title', ''))} API {escape(info.get('version', ''))}</h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        "<p>Every route takes <code>Authorization: Bearer &lt;token&gt;</code> "
        "(<code>shipyard tokens create NAME --role ROLE</code>); errors are "
        "<code>application/problem+json</code>. The whole document: "
        '<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>'
        + "".join(sections)
        + "</body></html>"
    )
    return HTMLResponse(page)
