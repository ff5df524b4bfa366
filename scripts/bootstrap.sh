#!/usr/bin/env bash
# Prepares everything Shipyard needs on a fresh Debian/Ubuntu machine with Python 3.11+:
# a virtual environment in .venv with Shipyard and its dev tools, and the bubblewrap
# sandbox (installed with apt when running as root; otherwise it says how).
# Safe to run again: it only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "bootstrap: Shipyard needs Python 3.11 or newer as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_updated=0
apt_install() {
    if [ $apt_updated = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v bwrap >/dev/null 2>&1; then
    if as_root_with_apt; then
        echo "bootstrap: installing bubblewrap (apt)"
        apt_install bubblewrap
    else
        echo "bootstrap: bubblewrap is not installed; install it with: sudo apt-get install bubblewrap" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if as_root_with_apt; then
            apt_install python3-venv
            "$PYTHON" -m venv .venv
        else
            echo "bootstrap: '$PYTHON -m venv' failed; install it with: sudo apt-get install python3-venv" >&2
            exit 1
        fi
    fi
fi

stamp=.venv/.shipyard-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "bootstrap: installing Shipyard and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$wanted" > "$stamp"
fi
