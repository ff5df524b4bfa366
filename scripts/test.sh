#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest (SQLite always; PostgreSQL too when
# SHIPYARD_TEST_POSTGRES_URL is set, e.g. postgresql://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check src tests
.venv/bin/ruff format --check src tests
.venv/bin/mypy --strict src
# The layering (pyproject.toml [tool.importlinter]): faces over services over the orchestrator
# over the stages over the store.
.venv/bin/lint-imports
# pytest exits 5 when no test ran: that is a failure here, as is any other non-zero status.
exec .venv/bin/python -m pytest "$@"
