"""Index layout decisions, pure: which features a cluster has, the templates and bulk lines for each
path. The data-stream + ILM path cannot run here (the local integ-test-zip cluster has neither
module), so its requests are checked as data; the daily-index path also runs against the real
cluster in tests/integration/test_elasticsearch_sink.py."""

from __future__ import annotations

import orjson
from logtide.schemas import decode, to_document
from logtide.sinks.elasticsearch_docs import (
    KINDS,
    ClusterFeatures,
    bulk_lines,
    cluster_features,
    component_templates,
    ilm_policy,
    index_for,
    index_templates,
    replica_settings,
)
from logtide.sinks.elasticsearch_sink import chunk_by_bytes

from tests.samples import samples

FULL = {"nodes": {"a": {"modules": [{"name": "x-pack-core"}, {"name": "x-pack-ilm"}, {"name": "data-streams"}]}}}
LOCAL = {"nodes": {"a": {"modules": [{"name": "apm"}, {"name": "x-pack-core"}, {"name": "x-pack-security"}]}}}


def _log() -> dict:
    return next(to_document(decode(orjson.dumps(d), m)) for m, d in samples().items() if m.KIND == "log_event")


def test_features_need_the_module_on_every_node() -> None:
    assert cluster_features(FULL) == ClusterFeatures(ilm=True, data_streams=True)
    assert cluster_features(LOCAL) == ClusterFeatures()
    mixed = {"nodes": {**FULL["nodes"], **{"b": LOCAL["nodes"]["a"]}}}
    assert cluster_features(mixed) == ClusterFeatures()
    assert cluster_features({}) == ClusterFeatures()


def test_data_stream_path_writes_creates_into_one_stream_per_kind() -> None:
    full = ClusterFeatures(ilm=True, data_streams=True)
    doc = _log()
    assert index_for(doc, "lt", data_streams=True) == "lt-logs"
    action, source, _ = bulk_lines(doc, "lt", data_streams=True).split(b"\n")
    assert orjson.loads(action) == {"create": {"_index": "lt-logs", "_id": doc["event"]["id"]}}
    assert orjson.loads(source) == doc
    templates = index_templates("lt", full)
    assert set(templates) == {f"lt-{k}" for k in KINDS}
    assert all(t["data_stream"] == {} for t in templates.values())
    assert templates["lt-logs"]["index_patterns"] == ["lt-logs*"]
    # metrics-agg also matches lt-metrics*: it must win by priority, not tie
    assert templates["lt-metrics-agg"]["priority"] > templates["lt-metrics"]["priority"]
    settings = component_templates("lt", "auto", full)["lt-settings"]["template"]["settings"]["index"]
    assert settings["lifecycle"] == {"name": "lt-retention"}
    policy = ilm_policy(7)["phases"]
    assert policy["delete"] == {"min_age": "7d", "actions": {"delete": {}}}
    assert "rollover" in policy["hot"]["actions"]


def test_fallback_path_writes_daily_indices_without_lifecycle() -> None:
    doc = _log()
    assert index_for(doc, "lt") == "lt-logs-2026.11.26"
    assert orjson.loads(bulk_lines(doc, "lt").split(b"\n")[0]) == {
        "index": {"_index": "lt-logs-2026.11.26", "_id": doc["event"]["id"]}
    }
    templates = index_templates("lt")
    assert all("data_stream" not in t for t in templates.values())
    assert templates["lt-logs"]["index_patterns"] == ["lt-logs-*"]
    settings = component_templates("lt")["lt-settings"]["template"]["settings"]["index"]
    assert "lifecycle" not in settings and settings["auto_expand_replicas"] == "0-1"


def test_replicas_from_config() -> None:
    assert replica_settings("auto") == {"auto_expand_replicas": "0-1"}
    assert replica_settings(2) == {"number_of_replicas": 2, "auto_expand_replicas": "false"}


def test_batches_are_bounded_in_bytes() -> None:
    assert chunk_by_bytes([400, 400, 400, 900, 100], 1000) == [[0, 1], [2], [3, 4]]
    assert chunk_by_bytes([5000, 10], 1000) == [[0], [1]]  # one larger document goes alone
    assert chunk_by_bytes([], 1000) == []
