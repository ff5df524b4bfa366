"""The service layer's names are imported on first use: each one a face may import resolves to
the object its module defines, and what type checkers are told matches what runs."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import shipyard.service as service

INIT = Path(service.__file__)


def _typing_imports() -> dict[str, str]:
    """Name -> module, from the ``if TYPE_CHECKING:`` block of the package's __init__."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    found: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.unparse(node)
        for alias in node.names:
            found[alias.asname or alias.name] = node.module
    return found


def test_what_type_checkers_read_is_what_is_imported_at_run_time() -> None:
    assert _typing_imports() == service._MODULE_OF
    assert sorted(service.__all__) == sorted(service._MODULE_OF)


@pytest.mark.parametrize("name", sorted(service.__all__))
def test_every_exported_name_is_its_modules_own(name: str) -> None:
    module = importlib.import_module(service._MODULE_OF[name])
    assert getattr(service, name) is getattr(module, name)


def test_a_name_it_does_not_export_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'no_such_query'"):
        service.no_such_query  # noqa: B018


def test_the_queries_load_without_the_orchestrator() -> None:
    code = (
        "import sys\n"
        "from shipyard.service import Records, count_by_state, list_tasks, task_story\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dbos'"
        " or m.startswith('shipyard.orchestrator')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
