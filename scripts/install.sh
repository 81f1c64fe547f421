#!/usr/bin/env bash
# Install causal_widgets into ./.venv (CPU torch first, so pip never pulls a multi-GB CUDA build).
#   bash scripts/install.sh          # the library + notebook tools + the paper extra
#                                    # (matplotlib, scikit-learn) (for the main job)
#   bash scripts/install.sh --test   # also the test tools, deep-ei 0.7.0 (benchmark peer), Ray
#                                    # and Debian's chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch (this pin resolves to the local CPU wheel; an unpinned torch is CUDA).
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
if [ "$want_test" = 1 ]; then
  python -m pip install -q -e ".[notebook,paper,test,bench,ray]"
  if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "note: Debian's chromium is missing and we are not root; the browser test will be skipped" >&2
    fi
  fi
else
  python -m pip install -q -e ".[notebook,paper]"
fi
python -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
echo "causal_widgets installed in $(pwd)/.venv"
