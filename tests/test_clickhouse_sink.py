"""The ClickHouse tables and the sink on the real engine (chdb); the Grafana queries are checked on
the demo's data in tests/integration/test_dashboards.py."""

from __future__ import annotations

import orjson
import pytest
from logtide.schemas import decode, to_document
from logtide.sinks.clickhouse_sink import ChdbBackend, ClickHouseSink

from tests.samples import samples


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> ClickHouseSink:
    backend = ChdbBackend(tmp_path_factory.mktemp("chdb"))
    yield ClickHouseSink(backend)
    backend.close()


def _docs() -> list[dict]:
    return [to_document(decode(orjson.dumps(d), m)) for m, d in samples().items()]


def test_sink_writes_each_kind_once_even_when_replayed(sink: ClickHouseSink) -> None:
    docs = _docs()
    assert sink.write(docs) == []
    # logs, aggregates, anomalies, dead letters are stored; metric samples and alerts are not
    assert (sink.written, sink.skipped) == (4, 2)
    sink.write(docs)  # a replay: same ids
    for table in ("logs", "metrics_agg", "anomalies", "deadletter"):
        rows = sink.backend.query_rows(f"SELECT count() AS n FROM logtide.{table} FINAL")
        assert rows == [{"n": 1}], table
    log = sink.backend.query_rows(
        "SELECT host, service, level, offset, http_status, message FROM logtide.logs FINAL"
    )
    assert log == [
        {
            "host": "web-1",
            "service": "nginx",
            "level": "info",
            "offset": 4096,
            "http_status": 200,
            "message": '127.0.0.1 - - "GET / HTTP/1.1" 200 612',
        }
    ]
    anomaly = sink.backend.query_rows(
        "SELECT score, severity, toString(ts) AS ts FROM logtide.anomalies FINAL"
    )
    assert anomaly == [{"score": 0.999, "severity": "critical", "ts": "2026-11-26 12:00:00.000"}]


def test_document_that_cannot_be_a_row_is_rejected_with_reason(sink: ClickHouseSink) -> None:
    docs = _docs()
    broken = dict(docs[2])  # a window aggregate without stats
    del broken["stats"]
    rejected = sink.write([docs[0], broken])
    assert rejected == [(1, "cannot map to a ClickHouse row: KeyError: 'stats'")]


def test_wrongly_typed_value_is_rejected_not_retried_forever(sink: ClickHouseSink) -> None:
    docs = _docs()
    bad = dict(docs[3], value="NaN-ish")  # an anomaly whose value is a string
    rejected = sink.write([docs[0], bad])
    assert rejected == [(1, "cannot map to a ClickHouse row: ValueError: expected a number, got 'NaN-ish'")]


def test_the_same_refusal_stamped_later_is_one_dead_letter(sink: ClickHouseSink) -> None:
    """A dead letter carries the time a stage refused the record; the same refusal made again (a
    redelivery, a rerun of `logtide run`) has the same id and a later time, and is still one row."""
    from datetime import timedelta

    from logtide.schemas.models import DeadLetter

    dl = next(decode(orjson.dumps(d), m) for m, d in samples().items() if m is DeadLetter)
    first = to_document(dl)
    first["event"]["id"] = "dl-refused-twice"
    again = to_document(dl.model_copy(update={"timestamp": dl.timestamp + timedelta(minutes=7)}))
    again["event"]["id"] = "dl-refused-twice"
    assert first["@timestamp"] != again["@timestamp"]
    assert sink.write([first]) == [] and sink.write([again]) == []
    rows = sink.backend.query_rows("SELECT count() AS n FROM logtide.deadletter FINAL WHERE id = 'dl-refused-twice'")
    assert rows == [{"n": 1}]
