"""Where each event document goes in Elasticsearch, and the templates that make Kibana work.

Pure: index naming, bulk lines, component and index templates, the ILM policy and the choice
between data streams and daily indices; the client lives in `elasticsearch_sink.py`. The event
id is the document `_id`, so a replayed or retried event overwrites itself (daily indices) or is
answered 409 "already there" (data streams) instead of appearing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

INDEX_OF_SCHEMA = {
    "log_event": "logs",
    "metric_sample": "metrics",
    "window_aggregate": "metrics-agg",
    "anomaly": "anomalies",
    "alert": "alerts",
    "dead_letter": "deadletter",
}
KINDS = tuple(INDEX_OF_SCHEMA.values())


@dataclass(frozen=True)
class ClusterFeatures:
    """What the cluster can do; the local test cluster (integ-test-zip) has neither."""

    ilm: bool = False
    data_streams: bool = False


def cluster_features(nodes_plugins: dict[str, Any]) -> ClusterFeatures:
    """From `GET _nodes/plugins`: ILM and data streams only when every node has the module."""
    nodes = list((nodes_plugins.get("nodes") or {}).values())
    if not nodes:
        return ClusterFeatures()

    def everywhere(fragment: str) -> bool:
        return all(any(fragment in m.get("name", "") for m in n.get("modules", [])) for n in nodes)

    return ClusterFeatures(ilm=everywhere("ilm"), data_streams=everywhere("data-streams"))


def kind_of(doc: dict[str, Any]) -> str:
    return INDEX_OF_SCHEMA.get((doc.get("logtide") or {}).get("schema", ""), "unknown")


def index_for(doc: dict[str, Any], prefix: str = "logtide", data_streams: bool = False) -> str:
    """`logtide-logs` (a data stream) or a daily index `logtide-logs-2026.11.26` (delete old days)."""
    kind = kind_of(doc)
    if data_streams:
        return f"{prefix}-{kind}"
    ts = str(doc.get("@timestamp") or "")
    day = ts[:10].replace("-", ".") if len(ts) >= 10 and ts[4] == "-" else "undated"
    return f"{prefix}-{kind}-{day}"


def bulk_lines(doc: dict[str, Any], prefix: str = "logtide", data_streams: bool = False) -> bytes:
    """The two NDJSON lines of one bulk item (data streams only take `create`)."""
    op = "create" if data_streams else "index"
    action = {op: {"_index": index_for(doc, prefix, data_streams), "_id": doc["event"]["id"]}}
    return orjson.dumps(action) + b"\n" + orjson.dumps(doc) + b"\n"


_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_DATE = {"type": "date_nanos"}
_DOUBLE = {"type": "double"}


def _series() -> dict[str, Any]:
    return {"properties": {"metric": _KEYWORD, "key": _KEYWORD, "labels": {"type": "flattened"}}}


def _window() -> dict[str, Any]:
    return {"properties": {"start": _DATE, "end": _DATE, "size_seconds": _DOUBLE, "step_seconds": _DOUBLE}}


# Fields every kind shares (ECS names), then each kind's own.
ECS_COMMON: dict[str, Any] = {
    "@timestamp": _DATE,
    "message": {"type": "text"},
    "tags": _KEYWORD,
    "event": {
        "properties": {
            "id": _KEYWORD,
            "original": {"type": "keyword", "index": False, "doc_values": False},
            "ingested": _DATE,
            "kind": _KEYWORD,
            "dataset": _KEYWORD,
            "duration": {"type": "long"},
        }
    },
    "host": {"properties": {"name": _KEYWORD, "hostname": _KEYWORD, "ip": {"type": "ip"}}},
    "service": {"properties": {"name": _KEYWORD, "environment": _KEYWORD, "version": _KEYWORD}},
    "logtide": {"properties": {"schema": _KEYWORD, "version": {"type": "short"}, "flags": _KEYWORD}},
}
KIND_MAPPINGS: dict[str, dict[str, Any]] = {
    "logs": {
        "log": {
            "properties": {
                "level": _KEYWORD,
                "logger": _KEYWORD,
                "offset": {"type": "long"},
                "file": {"properties": {"path": _KEYWORD}},
            }
        },
        "trace": {"properties": {"id": _KEYWORD}},
        "span": {"properties": {"id": _KEYWORD}},
        "http": {
            "properties": {
                "request": {"properties": {"method": _KEYWORD}},
                "response": {"properties": {"status_code": {"type": "short"}}},
            }
        },
        "url": {"properties": {"path": _KEYWORD}},
        "attributes": {"type": "flattened"},
    },
    "metrics": {
        "metric": {"properties": {"name": _KEYWORD, "value": _DOUBLE, "type": _KEYWORD, "unit": _KEYWORD}}
    },
    "metrics-agg": {
        "series": _series(),
        "window": _window(),
        "stats": {
            "properties": {
                "count": {"type": "long"},
                **{k: _DOUBLE for k in ("sum", "min", "max", "mean", "p50", "p90", "p99")},
            }
        },
    },
    "anomalies": {
        "series": _series(),
        "window": _window(),
        "value": _DOUBLE,
        "expected": _DOUBLE,
        "band": {"properties": {"lower": _DOUBLE, "upper": _DOUBLE}},
        "score": _DOUBLE,
        "severity": _KEYWORD,
        "detector": {"properties": {"name": _KEYWORD, "threshold": _DOUBLE}},
        "context": {"type": "object", "enabled": False},
        "status": _KEYWORD,
        "episode": {"properties": {"id": _KEYWORD, "start": _DATE, "end": _DATE}},
    },
    "alerts": {
        "status": _KEYWORD,
        "severity": _KEYWORD,
        "fingerprint": _KEYWORD,
        "summary": {"type": "text"},
        "description": {"type": "text"},
        "starts_at": _DATE,
        "ends_at": _DATE,
        "anomaly_ids": _KEYWORD,
        "annotations": {"type": "flattened"},
        "delivery": {
            "properties": {
                "receiver": _KEYWORD, "integration": _KEYWORD, "group_key": _KEYWORD,
                "attempt": {"type": "integer"}, "outcome": _KEYWORD, "reason": {"type": "text"},
                "content_hash": _KEYWORD,
            }
        },
    },
    "deadletter": {
        "error": {"properties": {"type": _KEYWORD, "message": {"type": "text"}, "field": _KEYWORD}},
        "source": {
            "properties": {
                "stage": _KEYWORD,
                "topic": _KEYWORD,
                "partition": {"type": "integer"},
                "offset": {"type": "long"},
            }
        },
        "dead_letter": {
            "properties": {
                "original_base64": {"type": "binary"},
                "original_size": {"type": "long"},
                "truncated": {"type": "boolean"},
            }
        },
    },
}


def replica_settings(replicas: str | int = "auto") -> dict[str, Any]:
    """`auto`: 0 replicas on one node, 1 once a second node joins (green from the first document)."""
    if replicas == "auto":
        return {"auto_expand_replicas": "0-1"}
    return {"number_of_replicas": int(replicas), "auto_expand_replicas": "false"}


def component_templates(
    prefix: str = "logtide", replicas: str | int = "auto", features: ClusterFeatures = ClusterFeatures()
) -> dict[str, dict[str, Any]]:
    """Name -> body of the shared building blocks: index settings, ECS common mappings."""
    settings: dict[str, Any] = {
        "number_of_shards": 1,
        "refresh_interval": "5s",
        "codec": "best_compression",
        **replica_settings(replicas),
    }
    if features.ilm:
        settings["lifecycle"] = {"name": ilm_policy_name(prefix)}
    mappings = {
        "dynamic_templates": [
            {"labels": {"path_match": "labels.*", "mapping": _KEYWORD}},
            {"strings": {"match_mapping_type": "string", "mapping": _KEYWORD}},
        ],
        "properties": ECS_COMMON,
    }
    return {
        f"{prefix}-settings": {"template": {"settings": {"index": settings}}},
        f"{prefix}-ecs": {"template": {"mappings": mappings}},
    }


def index_templates(
    prefix: str = "logtide", features: ClusterFeatures = ClusterFeatures()
) -> dict[str, dict[str, Any]]:
    """One composable template per kind. `metrics-agg-*` also matches `metrics-*`: it wins by priority."""
    out = {}
    for kind in KINDS:
        body: dict[str, Any] = {
            "index_patterns": [f"{prefix}-{kind}*" if features.data_streams else f"{prefix}-{kind}-*"],
            "composed_of": [f"{prefix}-settings", f"{prefix}-ecs"],
            "priority": 210 if kind == "metrics-agg" else 200,
            "template": {"mappings": {"properties": KIND_MAPPINGS[kind]}},
            "_meta": {"managed_by": "logtide", "kind": kind},
        }
        if features.data_streams:
            body["data_stream"] = {}
        out[f"{prefix}-{kind}"] = body
    return out


def ilm_policy_name(prefix: str = "logtide") -> str:
    return f"{prefix}-retention"


def ilm_policy(retention_days: int = 30) -> dict[str, Any]:
    """Hot (roll over daily or at 50 GB a shard) then delete after `retention_days`."""
    return {
        "phases": {
            "hot": {"actions": {"rollover": {"max_age": "1d", "max_primary_shard_size": "50gb"}}},
            "delete": {"min_age": f"{int(retention_days)}d", "actions": {"delete": {}}},
        }
    }
