#!/usr/bin/env bash
# Prepares everything Shipyard needs on a fresh Debian/Ubuntu machine with Python 3.11+:
# a virtual environment in .venv with Shipyard and its dev tools, the bubblewrap sandbox,
# and Debian's Chromium for the console's browser tests (system packages are installed with
# apt when running as root or with password-less sudo; otherwise it says how).
# Safe to run again: it only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "bootstrap: Shipyard needs Python 3.11 or newer as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

# apt runs as root, or through sudo when that needs no password (CI has no stdin).
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    as_root=(false)
fi
as_root_with_apt() { [ "${as_root[*]}" != false ] && command -v apt-get >/dev/null 2>&1; }
apt_updated=0
apt_install() {
    if [ $apt_updated = 0 ]; then
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v bwrap >/dev/null 2>&1; then
    if as_root_with_apt; then
        echo "bootstrap: installing bubblewrap (apt)"
        apt_install bubblewrap
    else
        echo "bootstrap: bubblewrap is not installed; install it with: sudo apt-get install bubblewrap" >&2
    fi
fi

# The console's browser tests drive Debian's Chromium (Playwright's own browser download is
# never used: `playwright install` is not run). fonts-liberation gives pages real glyphs.
if [ ! -x /usr/bin/chromium ]; then
    if as_root_with_apt; then
        echo "bootstrap: installing chromium (apt)"
        apt_install chromium fonts-liberation
    else
        echo "bootstrap: chromium is not installed; install it with: sudo apt-get install chromium" >&2
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

# The console refreshes its task list in place with HTMX, fetched once from the npm registry
# into the environment (without it the console still works; its lists refresh on reload).
htmx=.venv/share/shipyard/htmx.min.js
if [ ! -f "$htmx" ]; then
    if command -v npm >/dev/null 2>&1; then
        tmp=$(mktemp -d)
        if (cd "$tmp" && npm pack --silent htmx.org@2.0.11 >/dev/null 2>&1) \
            && tar -xzf "$tmp"/htmx.org-2.0.11.tgz -C "$tmp" package/dist/htmx.min.js; then
            mkdir -p "$(dirname "$htmx")"
            cp "$tmp/package/dist/htmx.min.js" "$htmx"
        else
            echo "bootstrap: could not fetch htmx from npm; the console's lists refresh on reload" >&2
        fi
        rm -rf "$tmp"
    else
        echo "bootstrap: npm is not installed; the console's lists refresh on reload" >&2
    fi
fi
