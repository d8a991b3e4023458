"""Benchmark: the sinks beside their bare clients, on the same documents in the same run.

    .venv/bin/python bench/bench_sinks.py [--docs 20000] [--only es,clickhouse]

Elasticsearch (the local cluster of `logtide services up`), each into its own fresh indices with
the same templates:
  * ours:      `logtide sink --once` (a subprocess) reading the documents from a Kafka topic and
               bulk-writing them (per-item results, retries, offsets committed after the writes);
               its fixed start (measured on an empty topic) is printed beside it
  * ours-core: ElasticsearchSink.write on the documents in memory (no Kafka), batches of 2000
  * peer:      elasticsearch.helpers.async_streaming_bulk on the same documents in memory
ClickHouse (the real engine, chdb, behind tests/chdb_http.py's HTTP interface):
  * ours:      ClickHouseSink over clickhouse-connect (row mapping + JSONEachRow insert), batches of 2000
  * peer:      a bare clickhouse-connect `insert` (Native) of the same rows, already as columns
Prints docs/s (rows/s) and the ratio ours/peer first. Every run is checked by counting what landed.
Not a test: run by hand. The box is shared (2 cores, several engineers): figures move by +-30 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_docs(n: int) -> list[dict]:
    from logtide.schemas import decode, to_document

    from tests.samples import samples

    base = next(to_document(decode(orjson.dumps(d), m)) for m, d in samples().items() if m.KIND == "log_event")
    t0 = datetime(2026, 11, 26, tzinfo=UTC)
    docs = []
    for i in range(n):
        d = orjson.loads(orjson.dumps(base))
        d["event"]["id"] = f"b{i:08d}"
        d["@timestamp"] = (t0 + timedelta(milliseconds=37 * i)).isoformat().replace("+00:00", "Z")
        d["service"]["name"] = f"svc-{i % 7}"
        d["message"] = f'10.0.{i % 250}.{i % 200} - - "GET /api/items/{i} HTTP/1.1" 200 {i % 5000}'
        docs.append(d)
    return docs


def line(name: str, n: int, seconds: float, unit: str = "docs/s") -> None:
    print(f"  {name:<11} {n:>8} in {seconds:6.2f} s = {n / seconds:>10,.0f} {unit}")


async def bench_es(docs: list[dict], es_url: str, kafka: str) -> None:
    from aiokafka import AIOKafkaProducer
    from elasticsearch import AsyncElasticsearch
    from elasticsearch.helpers import async_streaming_bulk
    from logtide.sinks.elasticsearch_docs import bulk_lines
    from logtide.sinks.elasticsearch_sink import ElasticsearchSink

    from logtide.config import parse_config
    from logtide.topics_admin import ensure_topics
    from tests.integration.test_elasticsearch_sink import _cleanup

    u = uuid.uuid4().hex[:8]
    prefixes = {k: f"bench{k}{u}" for k in ("ours", "core", "peer")}
    n = len(docs)
    results: dict[str, float] = {}
    async with AsyncElasticsearch(es_url, request_timeout=120) as es:
        try:
            # ours: Kafka -> `logtide sink --once`
            raw = {
                "kafka": {"bootstrap_servers": [kafka]},
                "topics": {"prefix": f"bench{u}.", "partitions": 2},
                "sinks": {"group_id": f"bench{u}", "sources": ["logs.enriched"], "batch_max_records": 2000,
                          "elasticsearch": {"hosts": [es_url], "index_prefix": prefixes["ours"]}},
            }  # fmt: skip
            await ensure_topics(parse_config(raw))
            with tempfile.TemporaryDirectory() as tmp:  # the fixed cost: start-up, templates, group join
                cfg = Path(tmp) / "sink.yaml"
                cfg.write_text(yaml.safe_dump({**raw, "sinks": {**raw["sinks"], "group_id": f"benchempty{u}"}}))
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "logtide.cli", "sink", "--config", str(cfg), "--once"],
                               capture_output=True, check=True)  # fmt: skip
                results["start"] = time.perf_counter() - t
            producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=1 << 20)
            await producer.start()
            try:
                futs = [await producer.send(f"bench{u}.logs.enriched", orjson.dumps(d)) for d in docs]
                await asyncio.gather(*futs)
            finally:
                await producer.stop()
            with tempfile.TemporaryDirectory() as tmp:
                cfg = Path(tmp) / "sink.yaml"
                cfg.write_text(yaml.safe_dump(raw))
                t = time.perf_counter()
                res = subprocess.run([sys.executable, "-m", "logtide.cli", "sink", "--config", str(cfg), "--once"],
                                     capture_output=True, text=True, check=False)  # fmt: skip
                results["ours"] = time.perf_counter() - t
                if res.returncode != 0:
                    raise SystemExit(res.stderr[-2000:])

            # ours-core: the sink's write path alone
            sink = ElasticsearchSink(es, prefix=prefixes["core"])
            await sink.ensure_templates()
            t = time.perf_counter()
            for i in range(0, n, 2000):
                assert (await sink.write(docs[i : i + 2000])).rejected == []
            results["ours-core"] = time.perf_counter() - t

            # peer: async_streaming_bulk, same templates, same ids and documents
            peer = ElasticsearchSink(es, prefix=prefixes["peer"])
            await peer.ensure_templates()

            def actions():
                for d in docs:
                    action = orjson.loads(bulk_lines(d, prefixes["peer"]).split(b"\n", 1)[0])["index"]
                    yield {"_op_type": "index", "_index": action["_index"], "_id": action["_id"], "_source": d}

            t = time.perf_counter()
            async for ok, item in async_streaming_bulk(es, actions(), chunk_size=2000, max_retries=3):
                assert ok, item
            results["peer"] = time.perf_counter() - t

            for k, p in prefixes.items():
                await es.indices.refresh(index=f"{p}-*")
                count = (await es.count(index=f"{p}-*"))["count"]
                assert count == n, f"{k}: {count} of {n} documents in Elasticsearch"
        finally:
            for p in prefixes.values():
                await _cleanup(es, p)
    print(f"Elasticsearch, {n} log documents, every run counted ({n} each):")
    print(f"  ratio ours/peer (logtide sink incl. Kafka read) = {results['peer'] / results['ours']:.2f}x;"
          f"  ours-core/peer (same write path, no Kafka) = {results['peer'] / results['ours-core']:.2f}x")  # fmt: skip
    line("ours", n, results["ours"])
    print(f"  (of which {results['start']:.2f} s is the fixed start: process, templates, Kafka group join, measured"
          f" on an empty topic; without it ours = {n / max(results['ours'] - results['start'], 1e-9):,.0f} docs/s)")
    line("ours-core", n, results["ours-core"])
    line("peer", n, results["peer"])


def bench_clickhouse(docs: list[dict]) -> None:
    import clickhouse_connect
    from logtide.sinks.clickhouse_rows import log_row
    from logtide.sinks.clickhouse_sink import ClickHouseSink, ServerBackend

    from tests.chdb_http import ChdbHttpServer

    n = len(docs)
    with tempfile.TemporaryDirectory() as tmp:
        server = ChdbHttpServer(Path(tmp) / "engine").start()
        try:
            sink = ClickHouseSink(ServerBackend(host="127.0.0.1", port=server.port), database="ours")
            t = time.perf_counter()
            for i in range(0, n, 2000):
                assert sink.write(docs[i : i + 2000]) == []
            ours = time.perf_counter() - t

            client = clickhouse_connect.get_client(host="127.0.0.1", port=server.port)
            ClickHouseSink(ServerBackend(host="127.0.0.1", port=server.port), database="peer")
            rows = [log_row(d) for d in docs]
            cols = list(rows[0])
            for r in rows:
                for k in ("ts", "ingested"):
                    r[k] = datetime.fromisoformat(r[k].replace("Z", "+00:00"))
            data = [[r[c] for c in cols] for r in rows]
            t = time.perf_counter()
            for i in range(0, n, 2000):
                client.insert("peer.logs", data[i : i + 2000], column_names=cols)
            peer = time.perf_counter() - t
            for db in ("ours", "peer"):
                got = client.query(f"SELECT count() FROM {db}.logs FINAL").result_rows[0][0]
                assert got == n, f"{db}: {got} of {n} rows"
        finally:
            server.close()
    print(f"ClickHouse (chdb behind the HTTP interface), {n} log rows, every run counted ({n} each):")
    print(f"  ratio ours/peer = {peer / ours:.2f}x  (ours maps documents to rows and sends JSONEachRow;"
          " the peer sends ready columns as Native)")
    line("ours", n, ours, "rows/s")
    line("peer", n, peer, "rows/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--only", default="es,clickhouse")
    args = ap.parse_args()
    docs = make_docs(args.docs)
    print(f"bench_sinks: {os.cpu_count()} cores, shared with other engineers' work; {args.docs} documents")
    if "es" in args.only:
        from logtide.services import ensure_up

        svc = ensure_up()
        asyncio.run(bench_es(docs, svc["elasticsearch"], svc["kafka"]))
    if "clickhouse" in args.only:
        bench_clickhouse(docs)


if __name__ == "__main__":
    main()
