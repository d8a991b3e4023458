#!/usr/bin/env bash
# Regenerates requirements.lock: the exact versions of every dependency (with the `all` and `test`
# extras) that scripts/setup.sh installs as constraints. Run after changing pyproject.toml's
# dependencies, then run the suite before committing the new lock.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/uv pip compile pyproject.toml --extra all --extra test --python-version 3.11 \
  --no-header --no-annotate -q -o requirements.lock
