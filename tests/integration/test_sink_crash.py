"""`logtide sink` under failure: a target down for a while commits nothing and loses nothing; a
kill -9 mid-stream and a restart leave every event exactly once in Elasticsearch and ClickHouse
(the ClickHouse server path: the real client against chdb behind tests/chdb_http.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from elasticsearch import AsyncElasticsearch
from logtide.schemas import decode, to_document
from prometheus_client.parser import text_string_to_metric_families

from logtide.config import parse_config
from logtide.sink_command import run_sinks
from logtide.topics_admin import ensure_topics
from tests.chdb_http import ChdbHttpServer
from tests.es_faults import EsFaultProxy
from tests.integration.test_elasticsearch_sink import _cleanup as cleanup_es
from tests.samples import samples

pytestmark = pytest.mark.integration


def _logs(n: int) -> list[bytes]:
    base = next(to_document(decode(orjson.dumps(d), m)) for m, d in samples().items() if m.KIND == "log_event")
    out = []
    for i in range(n):
        doc = orjson.loads(orjson.dumps(base))
        doc["event"]["id"] = f"evt-{i:06d}"
        doc["message"] = f"line {i}"
        out.append(orjson.dumps(doc))
    return out


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, v, key=v[-20:]) for v in values])
    finally:
        await producer.stop()


async def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(kafka: str, es: str, prefix: str, es_prefix: str, group: str, **sinks) -> dict:
    return {
        "kafka": {"bootstrap_servers": [kafka]},
        "topics": {"prefix": prefix, "partitions": 2},
        "sinks": {
            "group_id": group,
            "sources": ["logs.enriched"],
            "batch_wait_ms": 100,
            "retry_max_backoff_s": 0.3,
            "elasticsearch": {"hosts": [es], "index_prefix": es_prefix},
            **sinks,
        },
    }


async def test_cluster_down_commits_nothing_then_resumes_without_loss(
    kafka_bootstrap: str, es_url: str, unique: str, caplog
) -> None:
    prefix, es_prefix, group = f"o{unique}.", f"lto{unique}", f"g{unique}"
    proxy = EsFaultProxy(es_url).start()
    port = _free_port()
    cfg = parse_config(_config(kafka_bootstrap, proxy.url, prefix, es_prefix, group, metrics_listen=f"127.0.0.1:{port}"))
    await ensure_topics(cfg)
    topic = f"{prefix}logs.enriched"
    await _produce(kafka_bootstrap, topic, _logs(300))
    proxy.busy_requests = 10**6  # every bulk request answered 503: the cluster is down for writes
    caplog.set_level(logging.WARNING, "logtide.sinks")
    run = asyncio.create_task(run_sinks(cfg, once=True))
    try:
        async with asyncio.timeout(60):
            while sum(1 for r in caplog.records if "elasticsearch unavailable" in r.getMessage()) < 5:
                await asyncio.sleep(0.1)
        assert not run.done()
        assert await _committed(kafka_bootstrap, group, topic, 2) == 0  # nothing committed while waiting
        scraped = {
            (s.name, s.labels.get("target")): s.value
            for fam in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
            for s in fam.samples
        }  # the wait, as Prometheus sees it
        assert scraped[("logtide_sink_unavailable_seconds", "elasticsearch")] > 0
        assert scraped[("logtide_sink_retries_total", "elasticsearch")] >= 5
        proxy.busy_requests = 0  # back
        counters = await asyncio.wait_for(run, 120)
        assert counters["written"] == 300 and counters["dead_letters"] == 0
        assert await _committed(kafka_bootstrap, group, topic, 2) == 300
        async with AsyncElasticsearch(es_url) as es:
            await es.indices.refresh(index=f"{es_prefix}-*")
            assert (await es.count(index=f"{es_prefix}-*"))["count"] == 300
            await cleanup_es(es, es_prefix)
    finally:
        run.cancel()
        proxy.stop()


async def test_kill_9_mid_stream_then_restart_leaves_every_event_once(
    kafka_bootstrap: str, es_url: str, unique: str, tmp_path: Path
) -> None:
    n = 6000
    prefix, es_prefix, group = f"k{unique}.", f"ltk{unique}", f"g{unique}"
    ch = ChdbHttpServer(tmp_path / "clickhouse").start()
    raw = _config(
        kafka_bootstrap, es_url, prefix, es_prefix, group,
        batch_max_records=100,
        clickhouse={"mode": "server", "host": "127.0.0.1", "port": ch.port, "database": f"k{unique}"},
    )  # fmt: skip
    cfg_path = tmp_path / "sink.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    await ensure_topics(parse_config(raw))
    await _produce(kafka_bootstrap, f"{prefix}logs.enriched", _logs(n))
    cmd = [sys.executable, "-m", "logtide.cli", "sink", "--config", str(cfg_path)]
    log_path = tmp_path / "sink.log"
    es = AsyncElasticsearch(es_url)
    try:
        with log_path.open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=err, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                async with asyncio.timeout(120):
                    while True:
                        await asyncio.sleep(0.2)
                        await es.options(ignore_status=404).indices.refresh(index=f"{es_prefix}-*")
                        seen = (await es.options(ignore_status=404).count(index=f"{es_prefix}-*")).get("count", 0)
                        if seen >= n // 5:
                            break
                        assert proc.poll() is None, log_path.read_text()[-3000:]
                os.kill(proc.pid, signal.SIGKILL)
            finally:
                proc.wait(30)
        assert seen < n, "the sink finished before it could be killed mid-stream"
        res = subprocess.run([*cmd, "--once"], capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stderr[-3000:]

        await es.indices.refresh(index=f"{es_prefix}-*")
        assert (await es.count(index=f"{es_prefix}-*"))["count"] == n  # _id is the event id
        ids = await es.search(
            index=f"{es_prefix}-*", size=0, aggs={"ids": {"cardinality": {"field": "event.id", "precision_threshold": 40000}}}
        )
        assert ids["aggregations"]["ids"]["value"] == n
        with ch.lock:
            out = ch.session.query(
                f"SELECT count() AS n, uniqExact(id) AS ids FROM k{unique}.logs FINAL", "JSONEachRow"
            ).bytes()
        assert orjson.loads(out) == {"n": n, "ids": n}
        with ch.lock:  # without FINAL: re-delivered rows not yet merged away (background merges may have run)
            raw_rows = orjson.loads(ch.session.query(f"SELECT count() AS n FROM k{unique}.logs", "JSONEachRow").bytes())["n"]
        print(f"kill -9 after {seen} of {n} events in ES; after restart: {n} in ES and ClickHouse, once each by id "
              f"({raw_rows} ClickHouse rows without FINAL)")
    finally:
        await cleanup_es(es, es_prefix)
        await es.close()
        ch.close()
