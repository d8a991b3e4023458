"""What the alert core needs of an anomaly record, and a fast decoder straight from the wire to it.

Validating the full `Anomaly` model costs more than everything the alert core then does with a
record. `decode_facts` reads the JSON with orjson and checks every field of the contract itself, in
plain Python, accepting only the shapes the model certainly accepts (exact keys, exact JSON types,
RFC 3339 times, bounds); anything else - a missing field, an extra key, a number given as a string -
falls back to the full model (`schemas.decode`), so a bad record gets exactly the dead letter it
always got, and a record the model would coerce is coerced as before. A test checks both paths agree
on mutated records.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from logtide.schemas import DEFAULT_LIMITS, Anomaly, DeadLetter, DeadLetterSource, decode

_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_TOP = frozenset({"@timestamp", "event", "logtide", "labels", "message", "service", "host", "series", "window",
                  "value", "expected", "band", "score", "severity", "detector", "context", "status", "episode"})
_REQUIRED = ("@timestamp", "event", "logtide", "message", "series", "value", "expected", "band", "score",
             "severity", "detector")
_EVENT = frozenset({"id", "original", "ingested", "dataset", "kind", "duration"})
_KINDS = frozenset({"event", "metric", "alert", "pipeline_error"})
_META = frozenset({"schema", "version", "flags", "parse_error"})
_SERIES = frozenset({"metric", "key", "labels"})
_WINDOW = frozenset({"start", "end", "size_seconds", "step_seconds"})
_BAND = frozenset({"lower", "upper"})
_DETECTOR = frozenset({"name", "threshold"})
_POINT = frozenset({"@timestamp", "value"})
_EPISODE = frozenset({"id", "start", "end"})
_SERVICE = frozenset({"name", "environment", "version"})
_HOST = frozenset({"name", "hostname", "ip"})
_SEVERITIES = frozenset({"info", "warning", "critical"})
_STATUSES = frozenset({"firing", "resolved"})


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


def _ts(v: Any) -> float:
    got = _ts_seen.get(v) if type(v) is str else None
    if got is not None:
        return got
    if type(v) is not str or _TS.fullmatch(v) is None:
        raise _Slow
    try:
        got = datetime.fromisoformat(v).timestamp()
    except ValueError:
        raise _Slow from None
    if len(_ts_seen) >= 4096:
        _ts_seen.clear()
    _ts_seen[v] = got
    return got


def _num(v: Any) -> float:
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int:
        f = float(v)
        if math.isfinite(f):
            return f
    raise _Slow


def _str(v: Any) -> str:
    if type(v) is not str:
        raise _Slow
    return v  # type: ignore[no-any-return]


def _opt_str(d: dict[str, Any], k: str) -> None:
    v = d.get(k)
    if v is not None and type(v) is not str:
        raise _Slow


def _obj(v: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if type(v) is not dict or not v.keys() <= allowed:
        raise _Slow
    return v  # type: ignore[no-any-return]


def _str_map(v: Any) -> dict[str, str]:
    if type(v) is not dict:
        raise _Slow
    for x in v.values():
        if type(x) is not str:
            raise _Slow
    return v  # type: ignore[no-any-return]


def _fast(raw: bytes) -> AnomalyFacts:
    if len(raw) > DEFAULT_LIMITS.max_bytes:
        raise _Slow
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Slow from None
    if type(d) is not dict or not d.keys() <= _TOP:
        raise _Slow
    for k in _REQUIRED:
        if k not in d:
            raise _Slow
    ts = _ts(d["@timestamp"])
    ev = _obj(d["event"], _EVENT)
    event_id = _str(ev.get("id"))
    _opt_str(ev, "original")
    _opt_str(ev, "dataset")
    if ev.get("ingested") is not None:
        _ts(ev["ingested"])
    if "kind" in ev and ev["kind"] not in _KINDS:
        raise _Slow
    if ev.get("duration") is not None and type(ev["duration"]) is not int:
        raise _Slow
    meta = _obj(d["logtide"], _META)
    if meta.get("schema") != "anomaly" or ("version" in meta and type(meta["version"]) is not int):
        raise _Slow
    if "flags" in meta and (type(meta["flags"]) is not list or any(type(f) is not str for f in meta["flags"])):
        raise _Slow
    _opt_str(meta, "parse_error")
    labels = _str_map(d.get("labels", {}))
    message = _str(d["message"])
    if d.get("service") is not None:
        svc = _obj(d["service"], _SERVICE)
        _str(svc.get("name"))
        _opt_str(svc, "environment")
        _opt_str(svc, "version")
    if d.get("host") is not None:
        host = _obj(d["host"], _HOST)
        _str(host.get("name"))
        _opt_str(host, "hostname")
        ip = host.get("ip")
        if ip is not None and (type(ip) is not list or any(type(x) is not str for x in ip)):
            raise _Slow
    series = _obj(d["series"], _SERIES)
    metric, key = _str(series.get("metric")), _str(series.get("key"))
    slabels = _str_map(series.get("labels", {}))
    w_start = w_end = w_step = None
    if d.get("window") is not None:
        w = _obj(d["window"], _WINDOW)
        if len(w) != 4:
            raise _Slow
        w_start, w_end = _ts(w["start"]), _ts(w["end"])
        if not (_num(w["size_seconds"]) > 0 and (w_step := _num(w["step_seconds"])) > 0):
            raise _Slow
    value, expected = _num(d["value"]), _num(d["expected"])
    band = _obj(d["band"], _BAND)
    if len(band) != 2:
        raise _Slow
    lower, upper = _num(band["lower"]), _num(band["upper"])
    score = _num(d["score"])
    if not 0 <= score <= 1:
        raise _Slow
    severity = d["severity"]
    if severity not in _SEVERITIES:
        raise _Slow
    det = _obj(d["detector"], _DETECTOR)
    _str(det.get("name"))
    if not 0 <= _num(det.get("threshold")) <= 1:
        raise _Slow
    context: list[float] = []
    ctx = d.get("context", [])
    if type(ctx) is not list:
        raise _Slow
    for item in ctx:
        p = _obj(item, _POINT)
        if len(p) != 2:
            raise _Slow
        _ts(p["@timestamp"])
        context.append(_num(p["value"]))
    status = d.get("status", "firing")
    if status not in _STATUSES:
        raise _Slow
    ep = d.get("episode")
    ep_start = None
    if ep is not None:
        ep = _obj(ep, _EPISODE)
        ep_id = _str(ep.get("id"))
        ep_start = _ts(ep.get("start"))
        if ep.get("end") is not None:
            _ts(ep["end"])
    else:
        ep_id = event_id
    return AnomalyFacts(ts, ep_id, ep is not None, status == "resolved", ep_start, w_start, w_end, w_step,
                        slabels, metric, key, severity, labels.get("stat"), message, value, expected, lower, upper,
                        score, tuple(context))


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
