#!/bin/sh
# Creates Kibana data views for the logtide indices once Kibana answers.
set -eu
K=http://kibana:5601
until curl -fs "$K/api/status" >/dev/null; do sleep 5; done
for view in "logtide-logs:logtide-logs-*" "logtide-anomalies:logtide-anomalies-*" "logtide-deadletter:logtide-deadletter-*"; do
  id=${view%%:*}; pattern=${view#*:}
  curl -fs -X POST "$K/api/data_views/data_view" -H 'kbn-xsrf: true' -H 'Content-Type: application/json' \
    -d "{\"override\": true, \"data_view\": {\"id\": \"$id\", \"name\": \"$id\", \"title\": \"$pattern\", \"timeFieldName\": \"@timestamp\"}}" >/dev/null
  echo "data view $id -> $pattern"
done
