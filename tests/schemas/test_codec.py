"""Every contract round-trips; every kind of bad input becomes a dead letter with a reason."""

from __future__ import annotations

import base64
from datetime import timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.schemas import (
    DeadLetter,
    DeadLetterSource,
    Limits,
    LogEvent,
    MetricSample,
    decode,
    encode,
)
from logtide.schemas.codec import DecodeError, dead_letter

from tests.samples import T0, samples


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
        from logtide.schemas import validate

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
