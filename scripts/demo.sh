#!/usr/bin/env bash
# The main job: the whole pipeline embedded in one process on generated logs with an incident.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_APT=1 scripts/setup.sh
exec .venv/bin/logtide demo "$@"
