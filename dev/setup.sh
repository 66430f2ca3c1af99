#!/usr/bin/env bash
# Install everything ts_ocps and its tests need: Debian packages (when run
# as root), a virtual environment in .venv, the package and its extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    while read -r pkg; do
        [ -z "$pkg" ] || [[ "$pkg" == \#* ]] && continue
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done < dev/apt-packages.txt
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}"
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q -U pip
fi
# The pinned Science Pipelines set first, so that the pipelines extra
# below is already satisfied by it.
.venv/bin/pip install -q -r requirements-pipelines.txt
.venv/bin/pip install -q -e ".[test,dev,pipelines]"
