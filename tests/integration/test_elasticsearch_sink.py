"""The Elasticsearch sink against the real server: per-kind ECS templates (the fallback path: the
local integ-test-zip cluster has no ILM or data-stream modules), idempotent ids, per-item results
(mapping conflicts rejected with ES's reason, 429 items retried), an absent cluster waited out."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from elasticsearch import AsyncElasticsearch
from logtide.schemas import decode, to_document
from logtide.sinks.elasticsearch_docs import KINDS, ClusterFeatures, index_for
from logtide.sinks.elasticsearch_sink import ElasticsearchSink
from logtide.sinks.metrics import SinkMetrics
from logtide.sinks.retry import RetryPolicy, TargetUnavailable

from tests.es_faults import EsFaultProxy
from tests.samples import samples

pytestmark = pytest.mark.integration


def _docs() -> list[dict]:
    return [to_document(decode(orjson.dumps(d), m)) for m, d in samples().items()]


def _logs(n: int) -> list[dict]:
    base = _docs()[0]
    out = []
    for i in range(n):
        doc = orjson.loads(orjson.dumps(base))
        doc["event"]["id"] = f"log-{i}"
        out.append(doc)
    return out


def _policy(metrics: SinkMetrics | None = None, **kw) -> RetryPolicy:
    return RetryPolicy("elasticsearch", metrics or SinkMetrics(), initial_backoff_s=0.05, max_backoff_s=0.3, **kw)


async def _cleanup(es: AsyncElasticsearch, prefix: str) -> None:
    await es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
    for kind in KINDS:
        await es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{kind}")
    for part in ("settings", "ecs"):
        await es.options(ignore_status=404).cluster.delete_component_template(name=f"{prefix}-{part}")


async def test_every_kind_lands_once_with_ecs_types_and_a_green_index(es_url: str, unique: str) -> None:
    prefix = f"lt{unique}"
    async with AsyncElasticsearch(es_url) as es:
        sink = ElasticsearchSink(es, prefix=prefix, retry=_policy())
        try:
            features = await sink.ensure_templates()
            # The local cluster (integ-test-zip) has neither module: the daily-index fallback is what runs here.
            assert features == ClusterFeatures(ilm=False, data_streams=False)
            docs = _docs()
            first = await sink.write(docs)
            again = await sink.write(docs)  # a replay after a crash
            assert (first.indexed, first.rejected) == (len(docs), [])
            assert again.indexed == len(docs)
            await es.indices.refresh(index=f"{prefix}-*")
            assert (await es.count(index=f"{prefix}-*"))["count"] == len(docs)
            assert index_for(docs[0], prefix) == f"{prefix}-logs-2026.11.26"
            indices = sorted((await es.indices.get(index=f"{prefix}-*")).body)
            assert indices == sorted(f"{prefix}-{k}-2026.11.26" for k in KINDS)

            def props(kind: str) -> dict:
                return mapping[f"{prefix}-{kind}-2026.11.26"]["mappings"]["properties"]

            mapping = (await es.indices.get_mapping(index=f"{prefix}-*")).body
            logs = props("logs")
            assert logs["@timestamp"]["type"] == "date_nanos"
            assert logs["message"]["type"] == "text"
            for path in (("host", "name"), ("service", "name"), ("log", "level"), ("trace", "id")):
                assert logs[path[0]]["properties"][path[1]]["type"] == "keyword", path
            assert logs["http"]["properties"]["response"]["properties"]["status_code"]["type"] == "short"
            assert logs["labels"]["properties"]["env"]["type"] == "keyword"
            agg = props("metrics-agg")  # its own template wins over metrics-* by priority
            assert agg["stats"]["properties"]["p90"]["type"] == "double"
            assert agg["window"]["properties"]["end"]["type"] == "date_nanos"
            assert props("anomalies")["band"]["properties"]["upper"]["type"] == "double"
            assert props("alerts")["status"]["type"] == "keyword"
            assert props("deadletter")["error"]["properties"]["type"]["type"] == "keyword"

            settings = (await es.indices.get_settings(index=f"{prefix}-logs-*")).body
            index_settings = next(iter(settings.values()))["settings"]["index"]
            assert index_settings["auto_expand_replicas"] == "0-1"
            health = await es.cluster.health(index=f"{prefix}-*", wait_for_status="green", timeout="10s")
            assert health["status"] == "green"  # a single node is green from the first document
        finally:
            await _cleanup(es, prefix)


async def test_mapping_conflict_is_rejected_with_reason_others_land(es_url: str, unique: str) -> None:
    prefix = f"lt{unique}"
    async with AsyncElasticsearch(es_url) as es:
        sink = ElasticsearchSink(es, prefix=prefix, retry=_policy())
        try:
            await sink.ensure_templates()
            docs = _docs()
            bad = dict(docs[3], value="not-a-number")  # anomaly.value is mapped as double
            bad["event"] = dict(bad["event"], id="bad-1")
            res = await sink.write([*docs, bad])
            assert res.indexed == len(docs)
            assert [pos for pos, _ in res.rejected] == [len(docs)]
            assert "400" in res.rejected[0][1] and "document_parsing_exception" in res.rejected[0][1]
            assert "not-a-number" in res.rejected[0][1]  # ES's own reason, with its cause
        finally:
            await _cleanup(es, prefix)


async def test_busy_items_are_retried_nothing_else_held_back(es_url: str, unique: str, caplog) -> None:
    """429 items (from the proxy: the shared cluster cannot be made to answer 429) are retried
    after backoff, logged and counted; a 503 on a whole request likewise; the batch is split by bytes."""
    prefix = f"lt{unique}"
    proxy = EsFaultProxy(es_url).start()
    metrics = SinkMetrics()
    caplog.set_level(logging.WARNING, "logtide.sinks")
    async with AsyncElasticsearch(proxy.url, max_retries=0) as es:
        sink = ElasticsearchSink(es, prefix=prefix, retry=_policy(metrics), max_batch_bytes=20_000, max_concurrency=2)
        try:
            await sink.ensure_templates()
            docs = _logs(200)
            proxy.busy_items, proxy.busy_requests = 30, 1
            res = await sink.write(docs)
            assert (res.indexed, res.rejected) == (200, [])
            assert res.retries >= 2 and proxy.busy_items <= 0 and proxy.busy_requests == 0
            assert proxy.bulk_requests > 200 * 600 // 20_000  # split by bytes (each line ~600 B)
            retried = sum(s.value for m in metrics.retries.collect() for s in m.samples if s.name.endswith("_total"))
            assert retried >= 2
            assert any("elasticsearch unavailable" in r.getMessage() for r in caplog.records)
            await es.indices.refresh(index=f"{prefix}-*")
            assert (await es.count(index=f"{prefix}-*"))["count"] == 200
        finally:
            await _cleanup(es, prefix)
            proxy.stop()


async def test_absent_cluster_is_waited_out_logged_and_counted(es_url: str, unique: str, caplog) -> None:
    prefix = f"lt{unique}"
    proxy = EsFaultProxy(es_url).start()
    metrics = SinkMetrics()
    caplog.set_level(logging.WARNING, "logtide.sinks")
    async with AsyncElasticsearch(proxy.url, max_retries=0, request_timeout=5) as es:
        sink = ElasticsearchSink(es, prefix=prefix, retry=_policy(metrics))
        try:
            await sink.ensure_templates()
            proxy.stop()  # the cluster goes away
            write = asyncio.create_task(sink.write(_docs()))
            async with asyncio.timeout(30):
                while sum(1 for r in caplog.records if "elasticsearch unavailable" in r.getMessage()) < 4:
                    await asyncio.sleep(0.05)
            assert not write.done()
            assert metrics.unavailable_seconds.labels("elasticsearch")._value.get() > 0
            proxy.start()  # back
            res = await asyncio.wait_for(write, 60)
            assert res.indexed == len(_docs())
            assert metrics.unavailable_seconds.labels("elasticsearch")._value.get() == 0
        finally:
            proxy.start() if proxy._server is None else None
            await _cleanup(es, prefix)
            proxy.stop()


async def test_give_up_is_an_error_not_a_silent_drop(unique: str) -> None:
    proxy = EsFaultProxy("http://127.0.0.1:9").start()
    url = proxy.url
    proxy.stop()
    async with AsyncElasticsearch(url, max_retries=0) as down:
        sink = ElasticsearchSink(down, prefix=f"lt{unique}", retry=_policy(give_up_after_s=0.5))
        with pytest.raises(TargetUnavailable, match="bulk request failed"):
            await sink.write(_docs())
