"""The ClickHouse server path: the real clickhouse-connect client against the real engine (chdb)
behind ClickHouse's HTTP interface (tests/chdb_http.py), outages included."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from logtide.schemas import decode, to_document
from logtide.sinks.clickhouse_sink import ChdbBackend, ClickHouseSink, ServerBackend
from logtide.sinks.metrics import SinkMetrics
from logtide.sinks.retry import RetryPolicy, TargetUnavailable

from tests.chdb_http import ChdbHttpServer
from tests.samples import samples


def _docs() -> list[dict]:
    return [to_document(decode(orjson.dumps(d), m)) for m, d in samples().items()]


def _logs(n: int, start: int = 0) -> list[dict]:
    base = _docs()[0]
    out = []
    for i in range(start, start + n):
        doc = orjson.loads(orjson.dumps(base))
        doc["event"]["id"] = f"log-{i}"
        doc["service"]["name"] = f"svc-{i % 3}"
        out.append(doc)
    return out


def retries(metrics: SinkMetrics, target: str) -> float:
    return sum(
        s.value
        for m in metrics.retries.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels["target"] == target
    )


@pytest.fixture
def server(tmp_path):
    srv = ChdbHttpServer(tmp_path / "engine").start()
    yield srv
    srv.close()


def _client(srv: ChdbHttpServer) -> ServerBackend:
    return ServerBackend(host="127.0.0.1", port=srv.port, connect_timeout=2, send_receive_timeout=10)


def test_real_client_creates_inserts_and_reads_back(server: ChdbHttpServer) -> None:
    backend = _client(server)
    sink = ClickHouseSink(backend)
    docs = _docs()
    assert sink.write(docs) == []
    assert sink.write(docs) == []  # a replay
    for table in ("logs", "metrics_agg", "anomalies", "deadletter"):
        assert backend.query_rows(f"SELECT count() AS n FROM logtide.{table} FINAL") == [{"n": 1}], table
    keys = backend.query_rows("SELECT name, sorting_key FROM system.tables WHERE database = 'logtide'")
    assert {r["name"]: r["sorting_key"] for r in keys}["logs"] == "service, ts, id"
    described = {r["name"]: r["type"] for r in backend.query_rows("DESCRIBE TABLE logtide.logs")}
    assert described["ts"] == "DateTime64(6, 'UTC')" and described["service"] == "LowCardinality(String)"
    backend.close()


def test_native_insert_through_the_endpoint(server: ChdbHttpServer) -> None:
    """clickhouse-connect's own insert (Native format, chunked, lz4) lands in the real engine."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(host="127.0.0.1", port=server.port)
    client.command("CREATE TABLE default.n (a UInt32, s String) ENGINE = MergeTree ORDER BY a")
    client.insert("default.n", [[i, f"s{i}"] for i in range(50_000)], column_names=["a", "s"])
    assert client.query("SELECT count(), sum(a) FROM default.n").result_rows == [(50_000, 1_249_975_000)]
    client.close()


def test_row_the_server_names_is_rejected_others_written(server: ChdbHttpServer) -> None:
    sink = ClickHouseSink(_client(server))
    docs = _logs(9)
    docs[4]["@timestamp"] = "yesterday-ish"  # passes the row mapping, refused by the engine
    rejected = sink.write(docs)
    assert [pos for pos, _ in rejected] == [4]
    assert "Code: 41" in rejected[0][1]  # the server's own words (CANNOT_PARSE_DATETIME)
    n = sink.backend.query_rows("SELECT count() AS n FROM logtide.logs FINAL")
    assert n == [{"n": 8}]


def test_embedded_engine_rejects_rows_by_name_too(tmp_path) -> None:
    backend = ChdbBackend(tmp_path / "embedded")
    try:
        sink = ClickHouseSink(backend)
        docs = _logs(3)
        docs[1]["@timestamp"] = "not a time"
        rejected = sink.write(docs)
        assert [pos for pos, _ in rejected] == [1] and "Code: 41" in rejected[0][1]
        assert backend.query_rows("SELECT count() AS n FROM logtide.logs FINAL") == [{"n": 2}]
    finally:
        backend.close()


def test_no_answer_is_not_a_row_error(server: ChdbHttpServer) -> None:
    sink = ClickHouseSink(_client(server))
    server.stop()
    with pytest.raises(TargetUnavailable):
        sink.write(_logs(5))
    server.start()


async def test_outage_mid_batch_retried_whole_after_backoff(server: ChdbHttpServer, caplog) -> None:
    """First the server writes a batch but the connection drops before it answers; then it goes
    away for a while. The sink logs and counts each wait, retries the whole batch, rejects
    nothing, and every row is there exactly once."""
    sink = ClickHouseSink(_client(server))
    metrics = SinkMetrics()
    policy = RetryPolicy("clickhouse", metrics, initial_backoff_s=0.05, max_backoff_s=0.2)
    caplog.set_level(logging.WARNING, "logtide.sinks")

    server.drop_after_insert = 1
    first = _logs(200)
    assert await asyncio.wait_for(policy.call(lambda: asyncio.to_thread(sink.write, first)), 60) == []
    assert server.drop_after_insert == 0  # the dropped answer happened

    server.stop()
    second = _logs(300, start=100)  # overlaps the first batch: a replay of 100 rows
    write = asyncio.create_task(policy.call(lambda: asyncio.to_thread(sink.write, second)))
    async with asyncio.timeout(30):
        while retries(metrics, "clickhouse") < 3:
            await asyncio.sleep(0.02)
    assert not write.done()
    server.start()
    assert await asyncio.wait_for(write, 60) == []
    assert sum(1 for r in caplog.records if "clickhouse unavailable" in r.getMessage()) >= 3
    rows = sink.backend.query_rows("SELECT count() AS n, uniqExact(id) AS ids FROM logtide.logs FINAL")
    assert rows == [{"n": 400, "ids": 400}]


async def test_retry_stops_when_asked_and_after_give_up(server: ChdbHttpServer) -> None:
    sink = ClickHouseSink(_client(server))
    server.stop()
    stopping = asyncio.Event()
    policy = RetryPolicy("clickhouse", SinkMetrics(), initial_backoff_s=0.05, max_backoff_s=0.1, stopping=stopping)
    task = asyncio.create_task(policy.call(lambda: asyncio.to_thread(sink.write, _logs(3))))
    await asyncio.sleep(0.3)
    assert not task.done()
    stopping.set()
    with pytest.raises(TargetUnavailable):
        await asyncio.wait_for(task, 10)
    gave_up = RetryPolicy("clickhouse", SinkMetrics(), initial_backoff_s=0.05, max_backoff_s=0.1, give_up_after_s=0.3)
    with pytest.raises(TargetUnavailable):
        await asyncio.wait_for(gave_up.call(lambda: asyncio.to_thread(sink.write, _logs(3))), 10)


def test_ttl_from_config_on_new_and_existing_tables(server: ChdbHttpServer) -> None:
    backend = _client(server)
    ClickHouseSink(backend)  # created without TTL
    ClickHouseSink(backend, ttl_days={"logs": 7, "anomalies": 90})
    tables = {
        r["name"]: r["q"]
        for r in backend.query_rows(
            "SELECT name, create_table_query AS q FROM system.tables WHERE database = 'logtide'"
        )
    }
    assert "TTL toDateTime(ts) + toIntervalDay(7)" in tables["logs"]
    assert "toIntervalDay(90)" in tables["anomalies"]
    assert "TTL" not in tables["metrics_agg"]


def test_embedded_pipeline_turns_engine_rejections_into_dead_letters(tmp_path) -> None:
    from logtide.embedded import BatchResult, Outputs

    sink = ClickHouseSink(ChdbBackend(tmp_path / "clickhouse"))
    outputs = Outputs(tmp_path, clickhouse=sink)
    docs = _logs(3)
    docs[2]["@timestamp"] = "half past nine"
    outputs.write(BatchResult(enriched=[orjson.dumps(d) for d in docs]))
    outputs.close()
    assert outputs.clickhouse_rejected == 1
    letters = [orjson.loads(x) for x in (tmp_path / "deadletter.ndjson").read_bytes().splitlines()]
    assert [d["error"]["type"] for d in letters] == ["target_rejected"]
    assert "Code: 41" in letters[0]["error"]["message"]
    assert orjson.loads(letters[0]["event"]["original"])["event"]["id"] == "log-2"
    backend = ChdbBackend(tmp_path / "clickhouse")
    try:
        assert backend.query_rows("SELECT count() AS n FROM logtide.logs FINAL") == [{"n": 2}]
        assert backend.query_rows("SELECT error_type FROM logtide.deadletter FINAL") == [
            {"error_type": "target_rejected"}
        ]
    finally:
        backend.close()
