"""`logtide sink` end to end: Kafka topics into the real Elasticsearch and ClickHouse (chdb), bad
records dead-lettered with a reason, offsets committed only after the writes."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from elasticsearch import AsyncElasticsearch
from logtide.schemas import DeadLetter, decode, to_document
from logtide.sinks.clickhouse_sink import ChdbBackend

from logtide.config import parse_config
from logtide.sink_command import run_sinks
from logtide.topics_admin import ensure_topics
from tests.integration.test_elasticsearch_sink import _cleanup as cleanup_es
from tests.samples import samples

pytestmark = pytest.mark.integration


async def test_sink_writes_targets_dead_letters_and_commits(
    kafka_bootstrap: str, es_url: str, unique: str, tmp_path
) -> None:
    prefix = f"s{unique}."
    es_prefix = f"lts{unique}"
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": [kafka_bootstrap]},
            "topics": {"prefix": prefix, "partitions": 2},
            "sinks": {
                "group_id": f"g{unique}",
                "batch_wait_ms": 200,
                "elasticsearch": {"hosts": [es_url], "index_prefix": es_prefix},
                "clickhouse": {"mode": "embedded", "path": str(tmp_path / "ch")},
            },
        }
    )
    await ensure_topics(cfg)
    docs = {m.KIND: to_document(decode(orjson.dumps(d), m)) for m, d in samples().items()}
    unindexable = dict(docs["anomaly"], value="NaN-ish")
    unindexable["event"] = dict(unindexable["event"], id="bad-anomaly")
    sends = [
        (f"{prefix}logs.enriched", orjson.dumps(docs["log_event"])),
        (f"{prefix}metrics.agg", orjson.dumps(docs["window_aggregate"])),
        (f"{prefix}anomalies", orjson.dumps(docs["anomaly"])),
        (f"{prefix}anomalies", orjson.dumps(unindexable)),
        (f"{prefix}logs.enriched", b'{"message": "no closing brace"'),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic, value in sends:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()

    counters = await run_sinks(cfg, once=True)
    assert counters["records"] == 5
    assert counters["written"] == 3
    assert counters["dead_letters"] == 2
    assert counters["by_reason"] == {"invalid_json": 1, "target_rejected": 1}

    async with AsyncElasticsearch(es_url) as es:
        await es.indices.refresh(index=f"{es_prefix}-*")
        ids = sorted(h["_id"] for h in (await es.search(index=f"{es_prefix}-*", size=50))["hits"]["hits"])
        assert ids == sorted(docs[k]["event"]["id"] for k in ("log_event", "window_aggregate", "anomaly"))
        await cleanup_es(es, es_prefix)

    ch = ChdbBackend(tmp_path / "ch")
    try:
        assert ch.query_rows("SELECT count() AS n FROM logtide.logs FINAL") == [{"n": 1}]
        assert ch.query_rows("SELECT count() AS n FROM logtide.metrics_agg FINAL") == [{"n": 1}]
    finally:
        ch.close()

    consumer = AIOKafkaConsumer(
        f"{prefix}deadletter", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    letters = []
    try:
        async with asyncio.timeout(20):
            while len(letters) < 2:
                for recs in (await consumer.getmany(timeout_ms=500)).values():
                    letters += [decode(r.value, DeadLetter) for r in recs]
    finally:
        await consumer.stop()
    assert sorted(dl.error.type for dl in letters) == ["invalid_json", "target_rejected"]
    rejected = next(dl for dl in letters if dl.error.type == "target_rejected")
    assert (
        rejected.source.topic == f"{prefix}anomalies"
        and "document_parsing_exception" in rejected.error.message
    )
    assert orjson.loads(rejected.event.original)["event"]["id"] == "bad-anomaly"

    # offsets were committed: a second run reads only the dead letters it produced itself
    cfg.sinks.clickhouse = None
    again = await run_sinks(cfg, once=True)
    assert again["records"] == 2 and again["written"] == 2 and again["dead_letters"] == 0
