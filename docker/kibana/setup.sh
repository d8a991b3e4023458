#!/bin/sh
# Imports logtide's Kibana saved objects (data views, the errors search, the overview dashboard)
# once Kibana answers; `overwrite=true` makes a re-run replace them.
set -eu
K=http://kibana:5601
until curl -fs "$K/api/status" >/dev/null; do sleep 5; done
curl -fs -X POST "$K/api/saved_objects/_import?overwrite=true" -H 'kbn-xsrf: true' \
  --form file=@/kibana/logtide.ndjson
echo
echo "imported /kibana/logtide.ndjson"
