"""Every contract travels through the real broker and into the real Elasticsearch unchanged."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from logtide.schemas import MODELS, decode, encode, to_document

from logtide.cli import main
from logtide.config import parse_config
from logtide.topics_admin import ensure_topics
from tests.samples import samples

pytestmark = pytest.mark.integration


def _events() -> list:
    out = []
    for model, data in samples().items():
        ev = decode(orjson.dumps(data), model)
        assert isinstance(ev, model)
        out.append(ev)
    return out


async def test_every_schema_through_kafka(kafka_bootstrap: str, unique: str) -> None:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": [kafka_bootstrap]},
            "topics": {"prefix": f"t{unique}.", "partitions": 3},
        }
    )
    created = await ensure_topics(cfg)
    assert [r.status for r in created] == ["created"] * 6
    again = await ensure_topics(cfg)
    assert [r.status for r in again] == ["exists"] * 6

    topic = f"t{unique}.logs.raw"
    events = _events()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, compression_type="lz4"
    )
    await producer.start()
    try:
        for ev in events:
            await producer.send_and_wait(topic, encode(ev), key=ev.id.encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = []
    try:
        async with asyncio.timeout(30):
            while len(got) < len(events):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend(records)
    finally:
        await consumer.stop()
    decoded = {}
    for rec in got:
        data = orjson.loads(rec.value)
        model = MODELS[data["logtide"]["schema"]]
        ev = decode(rec.value, model)
        assert isinstance(ev, model)
        assert rec.key == ev.id.encode()
        decoded[ev.id] = ev
    assert decoded == {ev.id: ev for ev in events}


def test_topics_create_command_is_idempotent(kafka_bootstrap: str, unique: str, tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"kafka: {{bootstrap_servers: ['{kafka_bootstrap}']}}\ntopics: {{prefix: 'c{unique}.', partitions: 2}}\n"
    )
    runner = CliRunner()
    first = runner.invoke(main, ["topics", "create", "--config", str(cfg)])
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 6
    second = runner.invoke(main, ["topics", "create", "--config", str(cfg)])
    assert second.exit_code == 0 and second.output.count("exists") == 6


def test_topics_create_unreachable_broker_is_a_clear_error(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka: {bootstrap_servers: ['127.0.0.1:1']}\n")
    res = CliRunner().invoke(main, ["topics", "create", "--config", str(cfg)])
    assert res.exit_code != 0 and "cannot create topics on 127.0.0.1:1" in res.output


def test_every_schema_indexed_and_searched_in_elasticsearch(es_url: str, unique: str) -> None:
    es = Elasticsearch(es_url, request_timeout=30)
    index = f"logtide-test-{unique}"
    events = _events()
    try:
        for ev in events:
            es.index(index=index, id=ev.id, document=to_document(ev))
        # idempotent: indexing the same event again keeps one document per id
        es.index(index=index, id=events[0].id, document=to_document(events[0]))
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == len(events)
        for ev in events:
            hits = es.search(index=index, query={"term": {"logtide.schema.keyword": ev.KIND}})["hits"]["hits"]
            assert [h["_id"] for h in hits] == [ev.id]
            assert decode(orjson.dumps(hits[0]["_source"]), type(ev)) == ev
        text = es.search(index=index, query={"match": {"message": "error rate"}})["hits"]["hits"]
        assert [h["_source"]["logtide"]["schema"] for h in text] == ["anomaly"]
        ranged = es.search(index=index, query={"range": {"@timestamp": {"gte": "2026-11-26T12:00:00Z"}}})
        assert ranged["hits"]["total"]["value"] == len(events)
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
