#!/usr/bin/env bash
# The whole test suite with all its set-up: virtual environment, dependencies, the local Kafka and
# Elasticsearch (fetched from Maven Central on first use), lint, tests; the services it started
# are stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1

scripts/setup.sh

started=0
if ! .venv/bin/logtide services status >/dev/null 2>&1; then
  started=1
fi
cleanup() { if [ "$started" = "1" ]; then .venv/bin/logtide services down || true; fi; }
trap cleanup EXIT
# --secure: the TLS + SASL/SCRAM listener on :9094 with users and ACLs (tests/security); the
# plaintext listener on :9092 serves the rest of the suite.
.venv/bin/logtide services up --secure

.venv/bin/ruff check .
.venv/bin/python -m pytest -p no:cacheprovider -ra --durations=15 "$@"
