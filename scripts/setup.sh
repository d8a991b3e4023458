#!/usr/bin/env bash
# Creates .venv and installs logtide with its test dependencies; installs the Debian tools the
# tests call (kcat, and prometheus-alertmanager for the alert tests). Safe to repeat: each step is skipped when already done.
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
.venv/bin/uv pip install --python .venv/bin/python -q --compile-bytecode -c requirements.lock -e ".[all,test${EXTRAS:+,$EXTRAS}]"

# Debian tools the tests call, each installed only when missing (one apt run for all): kcat (a
# trusted Kafka reader to compare with), openssl (test certificates), prometheus and
# prometheus-node-exporter (the metrics comparison test), prometheus-alertmanager 0.25 (the alert
# tests). The tests start their own instances on loopback; the packages' services are not used.
missing=()
for tool in kcat openssl prometheus prometheus-node-exporter prometheus-alertmanager; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${SKIP_APT:-}" != "1" ] && [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]}; install them from Debian (sudo apt-get install ${missing[*]})" >&2
  fi
fi
