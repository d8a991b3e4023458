"""Validate and derive one metric sample on plain dicts: the batch path's fast lane for `metrics.raw`.

Why: a sample's own work is small (one point), so building a pydantic `MetricSample` per sample,
then its labels, series key and timestamp again, was most of what it cost the worker. Here the
sample stays the dict orjson made: it is checked against the same contract (`MetricSample`: exact
types, required fields, finite values, no unknown keys), its timestamp is parsed once per distinct
spelling (a scrape's samples share one) by pydantic's own datetime validator, its wall-clock skew is
decided once per spelling and batch clock, and its series (the labels `derive.sample_labels` makes,
the key, the rate name and kind `Deriver.from_sample` gives) is cached per label combination. The
point, source clock, skew and untimed outcome are those of `Stateless.metric`; the cardinality caps
stay where they are (the aggregator's `CardinalityGuard`, on the very same points).

A sample this lane is not sure about (any value of another type than the canonical one, strings
pydantic would coerce, a Python field name instead of an alias, anything invalid, anything raising)
gets None and takes the reference path, which decides it as before: point or dead letter (so dead
letters are the reference's own). Equivalence is a property test (tests/streams/test_fast_metric.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from logtide.schemas.codec import DEFAULT_LIMITS, _depth_exceeds
from logtide.schemas.models import MetricSample, MetricType
from logtide.streams.derive import (
    COUNTER,
    GAUGE,
    STALE,
    STALE_FLAG,
    Deriver,
    Point,
    is_rate,
    rate_name,
    series_key,
)
from logtide.streams.pipeline import SOURCE_SKEW, UNTIMED_FLAGS, Stateless, source_id
from logtide.streams.validate import SKEW_FLAG, SkewPolicy, skew_of
from pydantic import AwareDatetime, TypeAdapter

_parse_dt = TypeAdapter(AwareDatetime).validate_python
_KIND = MetricSample.KIND
# MetricSample's fields by their wire names (a field's Python name, `timestamp`, is left to the reference)
_FIELDS = frozenset({"@timestamp", "event", "logtide", "labels", "metric", "host", "service"})
_EVENT_KEYS = frozenset({"id", "original", "ingested", "dataset", "kind", "duration"})
_EVENT_KINDS = frozenset({"event", "metric", "alert", "pipeline_error"})
_META_KEYS = frozenset({"schema", "version", "flags", "parse_error"})
_METRIC_KEYS = frozenset({"name", "value", "type", "unit"})
_HOST_KEYS = frozenset({"name", "hostname", "ip"})
_SERVICE_KEYS = frozenset({"name", "environment", "version"})
_TYPES = {t.value: t for t in MetricType}
_MAX_BYTES, _MAX_DEPTH = DEFAULT_LIMITS.max_bytes, DEFAULT_LIMITS.max_depth
_CACHE_MAX = 100_000  # entries per cache (label values come from the data: bounded, cleared when full)
_EMPTY: dict[str, Any] = {}


class Unsure(Exception):
    """The sample is not of a shape this lane decides: the reference path takes it."""


def _opt_str(v: Any) -> bool:
    return v is None or type(v) is str


def _str_list(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _check_event(e: Any, ts_ok: Any) -> str:
    """The event id of a valid `event` group (EventInfo)."""
    if type(e) is not dict or not _EVENT_KEYS.issuperset(e):
        raise Unsure
    i = e.get("id")
    kind = e.get("kind", "event")
    dur = e.get("duration")
    ing = e.get("ingested")
    if type(i) is not str or type(kind) is not str or kind not in _EVENT_KINDS \
            or not _opt_str(e.get("original")) or not _opt_str(e.get("dataset")) \
            or not (dur is None or type(dur) is int) or not (ing is None or (type(ing) is str and ts_ok(ing))):
        raise Unsure
    return i


def _flags(m: Any) -> list[str]:
    """A copy of the flags of a valid `logtide` group (Meta) of a metric sample."""
    if type(m) is not dict or not _META_KEYS.issuperset(m) or m.get("schema") != _KIND \
            or type(m.get("version", 1)) is not int or not _opt_str(m.get("parse_error")):
        raise Unsure
    flags = m.get("flags")
    if flags is None:
        if "flags" in m:
            raise Unsure
        return []
    if not _str_list(flags):
        raise Unsure
    return list(flags)


def _host_name(h: Any) -> str | None:
    if h is None:
        return None
    if type(h) is not dict or not _HOST_KEYS.issuperset(h):
        raise Unsure
    name, ip = h.get("name"), h.get("ip")
    if type(name) is not str or not _opt_str(h.get("hostname")) or not (ip is None or _str_list(ip)):
        raise Unsure
    return name


def _service_name(s: Any) -> str | None:
    if s is None:
        return None
    if type(s) is not dict or not _SERVICE_KEYS.issuperset(s):
        raise Unsure
    name = s.get("name")
    if type(name) is not str or not _opt_str(s.get("environment")) or not _opt_str(s.get("version")):
        raise Unsure
    return name


class FastMetric:
    """The plain-dict lane of `Stateless.metric` (same source clocks, same marks); see the module doc."""

    def __init__(self, sl: Stateless) -> None:
        self.sl = sl
        self.enabled = True  # the caller's switch
        self._times: dict[str, tuple[datetime, int]] = {}  # @timestamp spelling -> (instant, ms)
        self._ingested: set[str] = set()  # event.ingested spellings the model accepts
        # wall-clock skew per @timestamp spelling, for one (batch clock, policy): (now, policy, {text: skew})
        self._skews: tuple[datetime | None, SkewPolicy | None, dict[str, str | None]] = (None, None, {})
        # (name, type, labels, host, service) -> (key, metric, labels, kind), for one Deriver (its window)
        self._series: dict[tuple[Any, ...], tuple[str, str, dict[str, str], int]] = {}
        self._derive: Deriver | None = None

    @property
    def usable(self) -> bool:
        return self.enabled

    def _time(self, text: str) -> tuple[datetime, int]:
        out = self._times.get(text)
        if out is None:
            ts = _parse_dt(text)  # the model's own validator: raises where it refuses
            if len(self._times) >= _CACHE_MAX:
                self._times.clear()
            out = self._times[text] = (ts, int(ts.timestamp() * 1000))  # `derive.ts_ms`
        return out

    def _ingested_ok(self, text: str) -> bool:
        if text not in self._ingested:
            _parse_dt(text)
            if len(self._ingested) >= _CACHE_MAX:
                self._ingested.clear()
            self._ingested.add(text)
        return True

    def _skew(self, text: str, ts: datetime, now: datetime) -> str | None:
        t_now, pol, cache = self._skews
        policy = self.sl.policy  # replaced by a configuration reload
        if t_now is not now or pol is not policy:
            cache = {}
            self._skews = (now, policy, cache)
        if text in cache:
            return cache[text]
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        s = cache[text] = skew_of(ts, now, policy)
        return s

    def series(self, name: str, mtype: str, labels: dict[str, str], host: str | None,
               service: str | None) -> tuple[str, str, dict[str, str], int]:
        """(key, metric, labels, kind) of a sample's point, as `Deriver.from_sample` makes them (kind
        without the staleness marker)."""
        d = self.sl.derive
        if d is not self._derive:
            self._series.clear()
            self._derive = d
        ck = (name, mtype, tuple(labels.items()), host, service)
        out = self._series.get(ck)
        if out is None:
            full = dict(labels)  # `derive.sample_labels`
            if host is not None and "instance" not in full:
                full.setdefault("host", host)
            if service is not None:
                full.setdefault("service", service)
            metric, kind = name, GAUGE
            if is_rate(_TYPES[mtype], name):
                metric, kind = rate_name(name, d.window_s), COUNTER
            if len(self._series) >= _CACHE_MAX:
                self._series.clear()
            out = self._series[ck] = (series_key(metric, full), metric, full, kind)
        return out

    def __call__(self, raw: bytes, now: datetime, partition: int | None) -> tuple[Any, ...] | None:
        """(point or None, skew, untimed, event-time source, event id), or None when unsure (the
        reference path takes the sample). The point is None where the reference makes none (skewed
        or untimed samples)."""
        if type(raw) is not bytes or len(raw) > _MAX_BYTES:
            return None
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(d) is not dict:
            return None
        if raw.count(b"{") + raw.count(b"[") > _MAX_DEPTH and _depth_exceeds(d, _MAX_DEPTH):
            return None
        try:
            return self._decide(d, now, partition)
        except Exception:  # Unsure, or whatever it is: the reference path decides it (and explains it)
            return None

    def _decide(self, d: dict[str, Any], now: datetime, partition: int | None) -> tuple[Any, ...]:
        # --- validate (MetricSample's contract, canonical types only) ---
        if not _FIELDS.issuperset(d):
            raise Unsure
        ts_text = d.get("@timestamp")
        if type(ts_text) is not str:
            raise Unsure
        ts, t_ms = self._time(ts_text)
        event_id = _check_event(d.get("event"), self._ingested_ok)
        flags = _flags(d.get("logtide"))
        labels = d.get("labels", _EMPTY)
        if type(labels) is not dict:
            raise Unsure
        for v in labels.values():
            if type(v) is not str:
                raise Unsure
        m = d.get("metric")
        if type(m) is not dict or not _METRIC_KEYS.issuperset(m):
            raise Unsure
        name, value, mtype = m.get("name"), m.get("value"), m.get("type", "gauge")
        if type(name) is not str or not name or type(mtype) is not str or mtype not in _TYPES \
                or not _opt_str(m.get("unit")):
            raise Unsure
        tv = type(value)
        if tv is float:
            if value - value != 0.0:  # NaN or inf (orjson makes neither; a caller's dict might)
                raise Unsure
        elif tv is int:
            value = float(value)  # what the model's float field holds (orjson's ints fit a double)
        else:
            raise Unsure  # bools, numeric strings, None: the reference decides
        host = _host_name(d.get("host"))
        service = _service_name(d.get("service"))
        # --- skew and event time (as `validate` and `Stateless.metric`) ---
        skew = self._skew(ts_text, ts, now)
        if skew is not None and SKEW_FLAG not in flags:
            flags.append(SKEW_FLAG)
        untimed = False
        for f in flags:
            if f in UNTIMED_FLAGS:
                untimed = True
                break
        src = source_id(partition, host, "metrics")
        if untimed or SKEW_FLAG in flags:
            return None, skew, untimed, src, event_id
        key, metric, full, kind = self.series(name, mtype, labels, host, service)
        if STALE_FLAG in flags:
            kind = STALE
        point = Point(key, metric, full, t_ms, value, kind)
        # the last step, after everything that could raise (a sample handed to the reference path must
        # not have moved its source's clock): the source clock, which may flag an outlier
        if self.sl.observe(src, t_ms, flags, "metric"):
            skew = SOURCE_SKEW
        return point, skew, untimed, src, event_id

