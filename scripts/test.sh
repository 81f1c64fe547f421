#!/usr/bin/env bash
# Install everything and run every test: lint, the front-end's unit tests, then pytest
# (engine, widgets, monitor, reproduction, notebooks, and the real-browser end-to-end test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
. .venv/bin/activate
echo "== ruff"; ruff check causal_widgets tests benchmarks
echo "== node --test js/tests"; node --test js/tests/
echo "== pytest"; python -m pytest -q -ra "$@"
