"""Where each event document goes in Elasticsearch, and the mappings that make Kibana work.

Pure: index naming, bulk actions and the index template; the client lives in
`elasticsearch_sink.py`. The event id is the document `_id`, so a replayed or retried event
overwrites itself instead of appearing twice.
"""

from __future__ import annotations

from typing import Any

INDEX_OF_SCHEMA = {
    "log_event": "logs",
    "metric_sample": "metrics",
    "window_aggregate": "metrics-agg",
    "anomaly": "anomalies",
    "alert": "alerts",
    "dead_letter": "deadletter",
}


def index_for(doc: dict[str, Any], prefix: str = "logtide") -> str:
    """Daily index per kind (`logtide-logs-2026.11.26`): cheap retention by deleting old days."""
    kind = INDEX_OF_SCHEMA.get((doc.get("logtide") or {}).get("schema", ""), "unknown")
    ts = str(doc.get("@timestamp") or "")
    day = ts[:10].replace("-", ".") if len(ts) >= 10 and ts[4] == "-" else "undated"
    return f"{prefix}-{kind}-{day}"


def bulk_action(doc: dict[str, Any], prefix: str = "logtide") -> dict[str, Any]:
    return {"_op_type": "index", "_index": index_for(doc, prefix), "_id": doc["event"]["id"], "_source": doc}


def index_template(prefix: str = "logtide") -> dict[str, Any]:
    """ECS-typed mappings for every logtide index; unknown strings become keywords, not text+keyword."""
    keyword = {"type": "keyword", "ignore_above": 1024}
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": 200,
        "template": {
            "settings": {
                "index": {"number_of_shards": 1, "refresh_interval": "5s", "codec": "best_compression"}
            },
            "mappings": {
                "dynamic_templates": [
                    {"labels": {"path_match": "labels.*", "mapping": keyword}},
                    {"strings": {"match_mapping_type": "string", "mapping": keyword}},
                ],
                "properties": {
                    "@timestamp": {"type": "date_nanos"},
                    "message": {"type": "text"},
                    "event": {
                        "properties": {
                            "id": keyword,
                            "original": {"type": "keyword", "index": False, "doc_values": False},
                            "ingested": {"type": "date_nanos"},
                            "kind": keyword,
                            "dataset": keyword,
                            "duration": {"type": "long"},
                        }
                    },
                    "log": {
                        "properties": {
                            "level": keyword,
                            "logger": keyword,
                            "offset": {"type": "long"},
                            "file": {"properties": {"path": keyword}},
                        }
                    },
                    "host": {"properties": {"name": keyword, "hostname": keyword, "ip": {"type": "ip"}}},
                    "service": {"properties": {"name": keyword, "environment": keyword, "version": keyword}},
                    "trace": {"properties": {"id": keyword}},
                    "logtide": {
                        "properties": {"schema": keyword, "version": {"type": "short"}, "flags": keyword}
                    },
                    "value": {"type": "double"},
                    "expected": {"type": "double"},
                    "score": {"type": "double"},
                    "severity": keyword,
                    "http": {"properties": {"response": {"properties": {"status_code": {"type": "short"}}}}},
                    "dead_letter": {"properties": {"original_base64": {"type": "binary"}}},
                    "attributes": {"type": "flattened"},
                },
            },
        },
    }
