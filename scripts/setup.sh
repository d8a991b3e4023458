#!/usr/bin/env bash
# Creates .venv and installs logtide with its test dependencies; installs the Debian tools the
# tests call (kcat). Safe to repeat: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
# requirements.lock pins what the suite last passed with (scripts/lock.sh regenerates it).
.venv/bin/uv pip install --python .venv/bin/python -q -c requirements.lock -e ".[all,test${EXTRAS:+,$EXTRAS}]"

# Debian tools the tests call: kcat (a trusted Kafka reader to compare with), openssl (test
# certificates). Each is installed only when missing.
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${SKIP_APT:-}" != "1" ] && [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; install them from Debian (sudo apt-get install ${missing[*]})" >&2
  fi
fi
# the metrics comparison test runs Debian's node_exporter and Prometheus on loopback
# (--no-install-recommends; the packages' services are not started by the test, it starts its own)
if [ "${SKIP_APT:-}" != "1" ] && { ! command -v prometheus >/dev/null 2>&1 || ! command -v prometheus-node-exporter >/dev/null 2>&1; }; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus prometheus-node-exporter >/dev/null
  else
    echo "setup: install Debian's prometheus and prometheus-node-exporter for the metrics comparison test" >&2
  fi
fi
