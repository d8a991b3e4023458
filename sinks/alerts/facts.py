"""What the alert core needs of an anomaly record, and a fast decoder straight from the wire to it.

Validating the full `Anomaly` model costs more than everything the alert core then does with a
record. `decode_facts` decodes the JSON with msgspec into strict structs that mirror the contract
(exact keys, exact JSON types, bounds; times as RFC 3339 strings with an offset, parsed once each),
accepting only what the model certainly accepts; anything else - a missing field, an extra key, a
number given as a string - falls back to the full model (`schemas.decode`), so a bad record gets
exactly the dead letter it always got, and a record the model would coerce is coerced as before. A
test checks both paths agree on mutated records.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from logtide.schemas import DEFAULT_LIMITS, Anomaly, DeadLetter, DeadLetterSource, decode
from logtide.schemas.strict_structs import EventInfoStruct, Int64
from msgspec import Meta, Struct, field

_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_Positive = Annotated[float, Meta(gt=0)]
_Unit = Annotated[float, Meta(ge=0, le=1)]


# The Anomaly contract as msgspec structs, strict (no coercion, no unknown keys). Times stay strings:
# `_ts` parses them (RFC 3339 with an offset, or the model decides).
class _Meta(Struct, forbid_unknown_fields=True):
    schema: Literal["anomaly"]
    version: Int64 = 1
    flags: list[str] = []
    parse_error: str | None = None


class _Service(Struct, forbid_unknown_fields=True):
    name: str
    environment: str | None = None
    version: str | None = None


class _Host(Struct, forbid_unknown_fields=True):
    name: str
    hostname: str | None = None
    ip: list[str] | None = None


class _Series(Struct, forbid_unknown_fields=True):
    metric: str
    key: str
    labels: dict[str, str] = {}


class _Window(Struct, forbid_unknown_fields=True):
    start: str
    end: str
    size_seconds: _Positive
    step_seconds: _Positive


class _Band(Struct, forbid_unknown_fields=True):
    lower: float
    upper: float


class _Detector(Struct, forbid_unknown_fields=True):
    name: str
    threshold: _Unit


class _Point(Struct, forbid_unknown_fields=True, kw_only=True):
    timestamp: str = field(name="@timestamp")
    value: float


class _Episode(Struct, forbid_unknown_fields=True):
    id: str
    start: str
    end: str | None = None


class _Anomaly(Struct, forbid_unknown_fields=True, kw_only=True):
    timestamp: str = field(name="@timestamp")
    event: EventInfoStruct
    logtide: _Meta
    labels: dict[str, str] = {}
    message: str
    service: _Service | None = None
    host: _Host | None = None
    series: _Series
    window: _Window | None = None
    value: float
    expected: float
    band: _Band
    score: _Unit
    severity: Literal["info", "warning", "critical"]
    detector: _Detector
    context: list[_Point] = []
    status: Literal["firing", "resolved"] = "firing"
    episode: _Episode | None = None


_decoder = msgspec.json.Decoder(_Anomaly)


@dataclass(slots=True)
class AnomalyFacts:
    """The fields of one anomaly record the alert core uses (times in epoch seconds)."""

    ts: float
    episode_id: str
    has_episode: bool
    resolved: bool
    episode_start: float | None
    window_start: float | None
    window_end: float | None
    window_step: float | None
    series_labels: dict[str, str]
    metric: str
    series_key: str
    severity: str
    stat: str | None
    message: str
    value: float
    expected: float
    band_lower: float
    band_upper: float
    score: float
    context: tuple[float, ...]


def facts_from_model(a: Anomaly) -> AnomalyFacts:
    """The facts of an already validated record (the embedded runner and tests hand over models)."""
    w, ep = a.window, a.episode
    return AnomalyFacts(
        ts=a.timestamp.timestamp(), episode_id=a.episode_id, has_episode=ep is not None,
        resolved=a.status.value == "resolved", episode_start=ep.start.timestamp() if ep is not None else None,
        window_start=w.start.timestamp() if w is not None else None,
        window_end=w.end.timestamp() if w is not None else None,
        window_step=w.step_seconds if w is not None else None,
        series_labels=dict(a.series.labels), metric=a.series.metric, series_key=a.series.key,
        severity=a.severity.value, stat=a.labels.get("stat"), message=a.message, value=a.value,
        expected=a.expected, band_lower=a.band.lower, band_upper=a.band.upper, score=a.score,
        context=tuple(p.value for p in a.context),
    )


class _Slow(Exception):
    """The fast path cannot vouch for this record: let the model decide."""


_ts_seen: dict[str, float] = {}  # window bounds repeat across series: parse each string once


def _ts(v: str) -> float:
    got = _ts_seen.get(v)
    if got is not None:
        return got
    if _TS.fullmatch(v) is None:
        raise _Slow
    try:
        got = datetime.fromisoformat(v).timestamp()
    except ValueError:
        raise _Slow from None
    if len(_ts_seen) >= 32_768:
        _ts_seen.clear()
    _ts_seen[v] = got
    return got


def _fast(raw: bytes) -> AnomalyFacts:
    if len(raw) > DEFAULT_LIMITS.max_bytes:
        raise _Slow
    try:
        d = _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise _Slow from None
    ts = _ts(d.timestamp)
    if d.event.ingested is not None:
        _ts(d.event.ingested)
    w = d.window
    if w is not None:
        w_start, w_end, w_step = _ts(w.start), _ts(w.end), w.step_seconds
        if math.inf in (w_step, w.size_seconds):
            raise _Slow
    else:
        w_start = w_end = w_step = None
    seen = _ts_seen
    context = []
    for p in d.context:
        if p.timestamp not in seen:
            _ts(p.timestamp)
        context.append(p.value)
    ep = d.episode
    if ep is not None:
        ep_id, ep_start = ep.id, _ts(ep.start)
        if ep.end is not None:
            _ts(ep.end)
    else:
        ep_id, ep_start = d.event.id, None
    band = d.band
    return AnomalyFacts(ts, ep_id, ep is not None, d.status == "resolved", ep_start, w_start, w_end, w_step,
                        d.series.labels, d.series.metric, d.series.key, d.severity, d.labels.get("stat"), d.message,
                        d.value, d.expected, band.lower, band.upper, d.score, tuple(context))


def fast_facts(raw: bytes) -> AnomalyFacts | None:
    """The facts when the fast path can vouch for the record, else None (the model must decide)."""
    try:
        return _fast(raw)
    except Exception:  # _Slow, or anything unforeseen: the fast path is never why a stage stops
        return None


def decode_facts(raw: bytes, source: DeadLetterSource | None = None) -> AnomalyFacts | DeadLetter:
    """One record from the wire: its facts, or the dead letter the full model gives it (never raises)."""
    f = fast_facts(raw)
    if f is not None:
        return f
    a = decode(raw, Anomaly, source=source)
    if isinstance(a, DeadLetter):
        return a
    return facts_from_model(a)
