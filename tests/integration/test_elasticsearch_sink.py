"""The Elasticsearch sink against the real server: ids are idempotent, bad documents are rejected
with a reason, and an unreachable server is waited out, not lost to."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
from elasticsearch import AsyncElasticsearch
from logtide.schemas import decode, to_document
from logtide.sinks.elasticsearch_docs import index_for
from logtide.sinks.elasticsearch_sink import ElasticsearchSink

from tests.samples import samples

pytestmark = pytest.mark.integration


def _docs() -> list[dict]:
    return [to_document(decode(orjson.dumps(d), m)) for m, d in samples().items()]


async def test_indexes_every_kind_once_with_ecs_mappings(es_url: str, unique: str) -> None:
    prefix = f"lt{unique}"
    async with AsyncElasticsearch(es_url) as es:
        sink = ElasticsearchSink(es, prefix=prefix)
        try:
            await sink.ensure_template()
            docs = _docs()
            first = await sink.write(docs)
            again = await sink.write(docs)  # a replay after a crash
            assert (first.indexed, first.rejected) == (len(docs), [])
            assert again.indexed == len(docs)
            await es.indices.refresh(index=f"{prefix}-*")
            assert (await es.count(index=f"{prefix}-*"))["count"] == len(docs)
            assert index_for(docs[0], prefix) == f"{prefix}-logs-2026.11.26"
            mapping = await es.indices.get_mapping(index=f"{prefix}-logs-*")
            props = next(iter(mapping.body.values()))["mappings"]["properties"]
            assert props["@timestamp"]["type"] == "date_nanos"
            assert props["log"]["properties"]["level"]["type"] == "keyword"
            assert props["labels"]["properties"]["env"]["type"] == "keyword"
            hits = await es.search(index=f"{prefix}-logs-*", query={"term": {"service.name": "nginx"}})
            assert hits["hits"]["hits"][0]["_id"] == docs[0]["event"]["id"]
        finally:
            await es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
            await es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-events")


async def test_unindexable_document_is_rejected_with_reason_others_land(es_url: str, unique: str) -> None:
    prefix = f"lt{unique}"
    async with AsyncElasticsearch(es_url) as es:
        sink = ElasticsearchSink(es, prefix=prefix)
        try:
            await sink.ensure_template()
            docs = _docs()
            bad = dict(docs[3], value="not-a-number")  # anomaly.value is mapped as double
            bad["event"] = dict(bad["event"], id="bad-1")
            res = await sink.write([*docs, bad])
            assert res.indexed == len(docs)
            assert [pos for pos, _ in res.rejected] == [len(docs)]
            assert "400" in res.rejected[0][1] and "document_parsing_exception" in res.rejected[0][1]
        finally:
            await es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
            await es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-events")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _proxy(port: int, target_host: str, target_port: int) -> asyncio.base_events.Server:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr, tw = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(pipe(r, tw), pipe(tr, w), return_exceptions=True)

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_unreachable_server_is_retried_until_it_answers(es_url: str, unique: str) -> None:
    prefix = f"lt{unique}"
    port = _free_port()
    host, es_port = es_url.rsplit("//", 1)[1].split(":")
    async with AsyncElasticsearch(f"http://127.0.0.1:{port}", retry_on_timeout=False, max_retries=0) as down:
        sink = ElasticsearchSink(down, prefix=prefix, max_backoff_s=0.5)
        write = asyncio.create_task(sink.write(_docs()))
        await asyncio.sleep(1.5)
        assert not write.done()  # nothing answers: the sink keeps the batch and retries
        server = await _proxy(port, host, int(es_port))  # the server "comes back"
        try:
            res = await asyncio.wait_for(write, 60)
        finally:
            server.close()
        assert res.indexed == len(_docs()) and res.retries >= 1
    async with AsyncElasticsearch(es_url) as es:
        await es.indices.refresh(index=f"{prefix}-*")
        assert (await es.count(index=f"{prefix}-*"))["count"] == len(_docs())
        await es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)


async def test_give_up_is_an_error_not_a_silent_drop(unique: str) -> None:
    port = _free_port()
    async with AsyncElasticsearch(f"http://127.0.0.1:{port}", max_retries=0) as down:
        sink = ElasticsearchSink(down, prefix=f"lt{unique}", max_backoff_s=0.2, give_up_after_s=0.5)
        with pytest.raises(TimeoutError, match="still not accepted"):
            await sink.write(_docs())
