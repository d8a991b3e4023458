"""Every contract round-trips; every kind of bad input becomes a dead letter with a reason."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AlertNotification,
    Anomaly,
    DeadLetter,
    DeadLetterSource,
    Limits,
    LogEvent,
    MetricSample,
    WindowAggregate,
    decode,
    encode,
    stable_id,
)
from schemas.codec import DecodeError, dead_letter

T0 = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
SERIES = {"metric": "http.requests", "key": "svc=web|host=a", "labels": {"service": "web", "host": "a"}}
WINDOW = {"start": "2026-11-26T11:59:00Z", "end": "2026-11-26T12:00:00Z", "size_seconds": 60, "step_seconds": 10}


def samples() -> dict[type, dict]:
    return {
        LogEvent: {
            "@timestamp": T0.isoformat(),
            "message": '127.0.0.1 - - "GET / HTTP/1.1" 200 612',
            "log": {"level": "info", "file": {"path": "/var/log/nginx/access.log"}, "offset": 4096},
            "host": {"name": "web-1"},
            "service": {"name": "nginx"},
            "trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"},
            "event": {"id": stable_id("web-1", "fp", 4096), "original": "raw", "ingested": T0.isoformat()},
            "logtide": {"schema": "log_event", "flags": ["ts_unparsed"]},
            "labels": {"env": "prod"},
            "http": {"response": {"status_code": 200}},
            "attributes": {"upstream": {"ms": 12.5}},
        },
        MetricSample: {
            "@timestamp": T0.isoformat(),
            "metric": {"name": "system.cpu.pct", "value": 0.42, "type": "gauge", "unit": "percent"},
            "host": {"name": "web-1"},
            "event": {"id": "m1", "kind": "metric"},
            "logtide": {"schema": "metric_sample"},
            "labels": {"cpu": "total"},
        },
        WindowAggregate: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "series": SERIES,
            "window": WINDOW,
            "stats": {"count": 3, "sum": 6, "min": 1, "max": 3, "mean": 2, "p50": 2, "p90": 3, "p99": 3},
            "event": {"id": "w1", "kind": "metric"},
            "logtide": {"schema": "window_aggregate"},
        },
        Anomaly: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "message": "error rate 0.4 above expected 0.01",
            "series": SERIES,
            "window": WINDOW,
            "value": 0.4,
            "expected": 0.01,
            "band": {"lower": 0.0, "upper": 0.05},
            "score": 0.999,
            "severity": "critical",
            "detector": {"name": "ensemble", "threshold": 0.99},
            "context": [{"@timestamp": "2026-11-26T11:59:00Z", "value": 0.01}],
            "event": {"id": "a1", "kind": "alert"},
            "logtide": {"schema": "anomaly"},
        },
        AlertNotification: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "status": "firing",
            "severity": "warning",
            "fingerprint": "f1",
            "summary": "web error rate",
            "starts_at": "2026-11-26T12:00:00Z",
            "anomaly_ids": ["a1"],
            "event": {"id": "n1", "kind": "alert"},
            "logtide": {"schema": "alert"},
        },
        DeadLetter: {
            "@timestamp": "2026-11-26T12:00:00Z",
            "error": {"type": "invalid_json", "message": "unexpected character"},
            "source": {"stage": "validate", "topic": "logtide.logs.raw", "partition": 0, "offset": 7},
            "dead_letter": {"original_base64": base64.b64encode(b"{oops").decode(), "original_size": 5},
            "event": {"id": "d1", "original": "{oops", "kind": "pipeline_error"},
            "logtide": {"schema": "dead_letter"},
        },
    }


@pytest.mark.parametrize("model", list(samples()), ids=lambda m: m.KIND)
def test_every_schema_round_trips(model: type) -> None:
    raw = orjson.dumps(samples()[model])
    first = decode(raw, model)
    assert isinstance(first, model), getattr(first, "error", None)
    again = decode(encode(first), model)
    assert again == first
    doc = orjson.loads(encode(first))
    assert "@timestamp" in doc and doc["event"]["id"] == first.id
    assert doc["@timestamp"].endswith("Z")


def test_log_event_keeps_unmodelled_ecs_groups() -> None:
    ev = decode(orjson.dumps(samples()[LogEvent]), LogEvent)
    assert orjson.loads(encode(ev))["http"] == {"response": {"status_code": 200}}


def _bad(raw: bytes | str, model: type = LogEvent, **kw) -> DeadLetter:
    src = DeadLetterSource(stage="validate", topic="logtide.logs.raw", partition=2, offset=41)
    out = decode(raw, model, source=src, **kw)
    assert isinstance(out, DeadLetter)
    assert out.source.expected_schema == model.KIND
    kept = base64.b64decode(out.dead_letter.original_base64)
    raw_bytes = raw.encode() if isinstance(raw, str) else raw
    assert raw_bytes.startswith(kept)
    assert out.dead_letter.original_size == len(raw_bytes)
    # the dead letter is itself a valid contract
    assert decode(encode(out), DeadLetter) == out
    return out


def good(**changes) -> dict:
    d = samples()[LogEvent]
    d.update(changes)
    return d


@pytest.mark.parametrize(
    ("raw", "kind", "field"),
    [
        (b'{"message": "unterminated', "invalid_json", None),
        (b"", "invalid_json", None),
        (b"[1, 2]", "validation", None),
        (b'\xff\xfe{"message": "x"}', "invalid_utf8", None),
        (b'{"@timestamp": "2026-01-01T00:00:00Z", "message": "\xc3\x28"}', "invalid_utf8", None),
        (b'{"value": NaN}', "non_finite", None),
        (b'{"value": 1e999}', "non_finite", None),
        (b'{"value": -Infinity}', "non_finite", None),
        (orjson.dumps(good(message=42)), "validation", "message"),
        (orjson.dumps({k: v for k, v in good().items() if k != "@timestamp"}), "missing_field", "@timestamp"),
        (orjson.dumps(good(**{"@timestamp": "yesterday-ish"})), "validation", "@timestamp"),
        (orjson.dumps(good(**{"@timestamp": "2026-01-01T00:00:00"})), "validation", "@timestamp"),
        (orjson.dumps(good(log={"offset": -1})), "validation", "log.offset"),
        (orjson.dumps(good(logtide={"schema": "anomaly"})), "validation", None),
        (b"[" * 5000 + b"]" * 5000, "too_deep", None),
        (orjson.dumps(good(attributes={"a": {"b": {"c": {"d": 1}}}})), "too_deep", None),
    ],
)
def test_bad_input_becomes_dead_letter(raw: bytes, kind: str, field: str | None) -> None:
    limits = Limits(max_depth=4) if b'"d":1' in raw else Limits()
    out = _bad(raw, limits=limits)
    assert out.error.type == kind, out.error
    assert out.error.message
    if field:
        assert out.error.field == field


def test_nan_metric_value_from_python_objects_is_rejected() -> None:
    d = samples()[MetricSample]
    d["metric"]["value"] = float("nan")
    with pytest.raises(DecodeError):
        from schemas import validate

        validate(d, MetricSample)


def test_huge_payload_is_dead_lettered_and_capped() -> None:
    raw = b'{"message": "' + b"x" * (2 << 20) + b'"}'
    out = _bad(raw, limits=Limits(max_bytes=1 << 20, dead_letter_keep_bytes=1024))
    assert out.error.type == "too_large"
    assert out.dead_letter.truncated and out.dead_letter.original_size == len(raw)
    assert len(base64.b64decode(out.dead_letter.original_base64)) == 1024


def test_dead_letter_id_is_stable_for_the_same_record() -> None:
    src = DeadLetterSource(stage="validate", topic="t", partition=0, offset=1)
    a = dead_letter(b"x", DecodeError("invalid_json", "m"), src, now=T0)
    b = dead_letter(b"x", DecodeError("invalid_json", "m"), src, now=T0 + timedelta(hours=1))
    assert a.id == b.id
    assert a.id != dead_letter(b"y", DecodeError("invalid_json", "m"), src).id


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_decode_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    out = decode(raw, LogEvent)
    assert isinstance(out, LogEvent | DeadLetter)


@settings(max_examples=100, deadline=None)
@given(
    message=st.text(max_size=200),
    labels=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=5),
    offset=st.integers(min_value=0, max_value=2**62),
)
def test_log_event_round_trips_any_text(message: str, labels: dict, offset: int) -> None:
    d = good(message=message, labels=labels, log={"offset": offset})
    ev = decode(orjson.dumps(d), LogEvent)
    assert isinstance(ev, LogEvent)
    assert ev.message == message and ev.labels == labels
    assert decode(encode(ev), LogEvent) == ev
