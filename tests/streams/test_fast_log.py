"""The plain-dict lane (`streams.fast_log.FastLog`) decides every record it takes exactly as the
reference (`Stateless.log`: pydantic validation, `Enricher`, `Deriver`, source clocks) would.

Records are drawn around the contract's edges: fields missing, None, of another type, unknown keys
in closed groups, top-level extras (None, nested), timestamps in many spellings and offsets (and
not timestamps), level words and numbers, status and duration fields of every type, trace ids, HTTP
extras, static labels and service rules. For each sequence, one `Stateless` runs the reference on
every record; another runs the fast lane and the reference only where the lane declines, as the
batch mapper does. Compared per record: the enriched bytes (byte for byte what `schemas.encode`
writes), the dead letter, skew and untimed flags, the event-time source, every point; at the end,
the sources' watermark marks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from logtide.schemas import DeadLetterSource, encode
from logtide.streams.config import StreamsConfig
from logtide.streams.fast_log import FastLog
from logtide.streams.pipeline import Stateless

NOW = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=1)

CONFIGS = [
    {},
    {"window": {"group_by": ["service", "host", "env"]}, "static_labels": {"env": "prod", "dc": "x"},
     "services": [{"host": "web-*", "service": "web", "environment": "prod"},
                  {"path": "/var/log/nginx/*", "service": "nginx", "override": True},
                  {"regex": "checkout", "service": "checkout"}],
     "max_past_skew_seconds": 7200.0},
    {"derive": {"enabled": False}, "trace_id_patterns": [r"trace=([0-9a-fA-F]{8,32})"], "max_future_skew_seconds": 0.5},
]

text = st.text(alphabet=st.sampled_from("abcXYZ019 -_./:=\u00e9\u2028\x00\""), max_size=12)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 700), st.integers(-(2**63), 2**64 - 1),
                   st.floats(allow_nan=False, allow_infinity=False), text)
json_value = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=3),
                                                      st.dictionaries(text, c, max_size=3)), max_leaves=6)
MISSING = object()


def ts_text(valid: bool = True) -> st.SearchStrategy:
    def spell(dt: datetime, offset_min: int, form: int) -> Any:
        local = dt.astimezone(timezone(timedelta(minutes=offset_min)))
        if form == 0:
            return local.isoformat()
        if form == 1:
            return local.isoformat(timespec="microseconds")
        if form == 2:
            return dt.isoformat().replace("+00:00", "Z")
        if form == 3:
            return local.isoformat(sep=" ", timespec="milliseconds")
        if form == 4:
            return local.replace(tzinfo=None).isoformat()  # naive: the model refuses it
        if form == 5:
            return int(dt.timestamp())  # a number: the model reads it as epoch seconds
        if form == 6:
            return str(int(dt.timestamp() * 1000))
        return local.isoformat() + "x"

    return st.builds(
        spell,
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))
        | st.integers(-4000_000, 8000_000).map(lambda ms: NOW + timedelta(milliseconds=ms * 10))
        | st.integers(-4000_000, 8000_000).map(lambda ms: NOW + timedelta(milliseconds=ms * 10)),
        st.sampled_from([0, 0, 0, 60, -330, 14 * 60 - 1, -(23 * 60 + 59)]),
        st.sampled_from([0, 1, 1, 1, 2, 3] if valid else [4, 5, 6, 7]),
    )


def opt(d: dict[str, Any], key: str, strategy: st.SearchStrategy, draw: st.DrawFn) -> None:
    if draw(st.booleans()):
        d[key] = draw(strategy)


# where a mutation may strike (a path into the record), and what it may leave there
PATHS = [("@timestamp",), ("event",), ("event", "id"), ("event", "original"), ("event", "ingested"),
         ("event", "kind"), ("event", "duration"), ("logtide",), ("logtide", "schema"), ("logtide", "version"),
         ("logtide", "flags"), ("logtide", "parse_error"), ("logtide", "schema_"), ("labels",), ("message",),
         ("log",), ("log", "level"), ("log", "file"), ("log", "offset"), ("log", "x"), ("host",),
         ("host", "name"), ("host", "ip"), ("service",), ("service", "name"), ("trace",), ("trace", "id"),
         ("tags",), ("attributes",), ("timestamp",), ("event", "x")]


@st.composite
def record(draw: st.DrawFn, i: int = 0) -> bytes:
    """A record of the model's shape, then zero to two mutations (missing, None, another type)."""
    ev: dict[str, Any] = {"id": f"e{i}"}
    opt(ev, "original", text, draw)
    opt(ev, "ingested", ts_text() | st.none(), draw)
    opt(ev, "dataset", st.sampled_from(["nginx", "app", None]), draw)
    opt(ev, "kind", st.sampled_from(["event", "metric"]), draw)
    opt(ev, "duration", st.integers(0, 10**12) | st.none(), draw)
    meta: dict[str, Any] = {"schema": "log_event"}
    opt(meta, "version", st.integers(0, 3), draw)
    opt(meta, "flags", st.lists(st.sampled_from(["ts_missing", "clock_skew", "truncated", "x"]), max_size=2), draw)
    opt(meta, "parse_error", text | st.none(), draw)
    d: dict[str, Any] = {"@timestamp": draw(ts_text()), "event": ev, "logtide": meta,
                         "message": draw(st.sampled_from(["GET /x 200", "checkout trace=ABCDEF0123456789", "ok", ""]))}
    opt(d, "labels", st.dictionaries(st.sampled_from(["env", "team", "dc"]), text, max_size=2), draw)
    if draw(st.integers(0, 5)):
        lg: dict[str, Any] = {}
        opt(lg, "level", st.sampled_from(["info", "INFO", " Warn ", "error", "SEVERE", "3", "9", "unknown", "err",
                                          "fatal", None]), draw)
        opt(lg, "logger", text | st.none(), draw)
        opt(lg, "file", st.none() | st.fixed_dictionaries({"path": st.sampled_from(
            ["/var/log/nginx/access.log", "/srv/app.log"])}), draw)
        opt(lg, "offset", st.integers(0, 10**6) | st.none(), draw)
        d["log"] = draw(st.just(lg) | st.none())
    opt(d, "host", st.none() | st.fixed_dictionaries(
        {"name": st.sampled_from(["web-1", "db-2", "web-3"])},
        optional={"hostname": st.none() | text, "ip": st.none() | st.lists(st.just("10.0.0.1"), max_size=2)}), draw)
    opt(d, "service", st.none() | st.fixed_dictionaries(
        {"name": st.sampled_from(["api", "checkout"])},
        optional={"environment": st.none() | text, "version": st.none() | text}), draw)
    opt(d, "trace", st.none() | st.fixed_dictionaries({"id": st.sampled_from(["abc", "DEF"])}), draw)
    opt(d, "tags", st.lists(text, max_size=2), draw)
    opt(d, "attributes", st.dictionaries(
        st.sampled_from(["status", "status_code", "http_status", "duration_ms", "request_time", "duration_ns",
                         "trace_id", "traceId", "http.status_class", "log.level.original", "path"]),
        st.sampled_from([200, 404, 503, "500", 99, 600, 200.0, "abc", None, True, 0.25, "0.5", "ABCDEF12", 1e308])
        | json_value, max_size=4), draw)
    if draw(st.booleans()):  # extras (ECS groups without a model home)
        d.update(draw(st.dictionaries(
            st.sampled_from(["http", "url", "source", "zz"]),
            st.none() | json_value | st.fixed_dictionaries({
                "response": st.fixed_dictionaries({"status_code": st.sampled_from([201, 502, "404", None])}),
                "request": st.fixed_dictionaries({"duration_ms": st.sampled_from([12, "3.5", None, "x"])})}),
            max_size=2)))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        path = draw(st.sampled_from(PATHS))
        parent = d
        for k in path[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            value = draw(st.sampled_from([MISSING, None]) | json_value | ts_text(valid=False))
            if value is MISSING:
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
    return orjson.dumps(d)


def outcome(sl: Stateless, raw: bytes, partition: int, fast: FastLog | None) -> tuple:
    if fast is not None:
        f = fast(raw, NOW, partition)
        if f is not None:
            data, skew, untimed, src, ts, combo, latency, _id = f
            pts = [(k, m, lab, ts, v) for k, m, lab, v in combo.consts] if combo is not None else []
            if latency is not None:
                pts.append((*combo.latency, ts, latency))
            return ("event", data, skew, untimed, src, pts), True
    r = sl.log(raw, NOW, DeadLetterSource(stage="validate", topic="raw", partition=partition, offset=1), partition)
    if r.dead is not None:
        d = orjson.loads(encode(r.dead))
        d.pop("@timestamp")  # when it was written
        return ("dead", d), False
    pts = [(p.key, p.metric, p.labels, p.ts_ms, p.value) for p in r.points]
    return ("event", encode(r.event), r.skew, r.untimed, r.src, pts), False


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), which=st.integers(0, len(CONFIGS) - 1), n=st.integers(1, 8))
def test_fast_lane_decides_every_record_it_takes_as_the_reference(data: st.DataObject, which: int, n: int) -> None:
    cfg = StreamsConfig.model_validate(CONFIGS[which])
    ref, lane = Stateless(cfg), Stateless(cfg)
    fast = FastLog(lane)
    for i in range(n):
        raw = data.draw(record(i))
        partition = i % 2
        want, _ = outcome(ref, raw, partition, None)
        got, taken = outcome(lane, raw, partition, fast)
        assert got == want, raw
        event("fast lane" if taken else f"reference: {want[0]}")
    assert sorted(lane.take_marks()) == sorted(ref.take_marks())


def typical(i: int, ts: datetime) -> bytes:
    """A shipper's access-log event (the shape `shippers.events` writes)."""
    return orjson.dumps({
        "@timestamp": ts.isoformat(timespec="microseconds"), "host": {"name": "web-1", "hostname": "web-1"},
        "logtide": {"schema": "log_event", "version": 1, "flags": []},
        "log": {"file": {"path": "/var/log/nginx/access.log"}, "offset": i * 120},
        "event": {"ingested": NOW.isoformat(timespec="microseconds"), "dataset": "nginx", "id": f"e{i}"},
        "message": f'10.0.0.1 - - "GET /x HTTP/1.1" {200 + i % 3 * 150} 12', "service": {"name": "web"},
        "attributes": {"status": 200 + i % 3 * 150, "request_time": 0.012, "remote_addr": "10.0.0.1"},
    })


def test_the_fast_lane_takes_the_usual_records_and_declines_what_it_must_not_decide() -> None:
    """Not vacuous: shipper-shaped records (with source-clock outliers among them) go the fast lane
    with the reference's outcome; a GeoIP configuration sends everything to the reference."""
    cfg = StreamsConfig.model_validate(CONFIGS[1])
    ref, lane = Stateless(cfg), Stateless(cfg)
    fast = FastLog(lane)
    times = [T0 + timedelta(seconds=i) for i in range(200)]
    times[50] += timedelta(hours=2)  # one line stamped far ahead: an outlier of its source
    taken = 0
    for i, t in enumerate(times):
        raw = typical(i, t)
        want, _ = outcome(ref, raw, 0, None)
        got, was_fast = outcome(lane, raw, 0, fast)
        assert got == want
        taken += was_fast
    assert taken == len(times)
    assert lane.take_marks() == ref.take_marks()
    assert fast(b'{"@timestamp": 5}', NOW, 0) is None and fast(b"not json", NOW, 0) is None

    class Geo:  # a GeoIP reader's interface (`enrich.GeoReader`); GeoIP enrichment stays on the reference path
        def get(self, ip: str) -> Any:
            return {"country": {"iso_code": "NL"}}

    assert fast.usable and not FastLog(Stateless(cfg, Geo())).usable


def test_the_fast_lane_follows_a_configuration_reload() -> None:
    """A reload replaces the enrichment tables and skew limits on the `Stateless` (`streams.reload`):
    the lane reads them there, so it enriches with the new rules as the reference does."""
    from logtide.streams.reload import apply_stateless

    old, new = (StreamsConfig.model_validate(c) for c in (CONFIGS[0], CONFIGS[1]))
    ref, lane = Stateless(old), Stateless(old)
    fast = FastLog(lane)
    for sl in (ref, lane):
        apply_stateless(sl, new)
    for i in range(20):
        raw = typical(i, T0 + timedelta(seconds=i))
        want, _ = outcome(ref, raw, 0, None)
        got, was_fast = outcome(lane, raw, 0, fast)
        assert was_fast and got == want
        assert orjson.loads(got[1])["labels"] == {"env": "prod", "dc": "x"}  # the new static labels
