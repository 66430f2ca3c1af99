#!/usr/bin/env bash
# Run the whole test suite in .venv (dev/setup.sh must have run).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
