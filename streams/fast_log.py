"""Validate, enrich and derive one log record on plain dicts: the batch path's fast lane.

Why: building a pydantic `LogEvent` per record, enriching it attribute by attribute and dumping it
again was about half of what a record cost the worker. Here the record stays the dict orjson made:
it is checked against the same contract (types, required fields, no unknown keys in the closed
groups), enriched by the same rules (`Enricher`'s helpers, shared), written in the model's field
order (the same bytes `schemas.encode` writes), and its points' series come from `Deriver`, cached per
label combination. Timestamps are read and written by pydantic's own datetime validator and
serializer, so they are read and spelt exactly as the model does.

A record this lane is not sure about (a field of another type, a name the model would read by its
Python name, GeoIP configured, anything raising) gets None and takes the reference path
(`Stateless.log`), which decides it as before: event or dead letter. Equivalence with the reference
is a property test (tests/streams/test_fast_log.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from logtide.schemas.codec import DEFAULT_LIMITS, _depth_exceeds
from logtide.schemas.models import LogEvent
from logtide.schemas.severity import severity_of
from logtide.streams.enrich import ERROR_SEVERITIES, add_http_fields
from logtide.streams.pipeline import SOURCE_SKEW, Stateless, has_event_time, source_id
from logtide.streams.validate import SKEW_FLAG, skew_of
from pydantic import AwareDatetime, TypeAdapter

_DT = TypeAdapter(AwareDatetime)
_parse_dt = _DT.validate_python
_dump_dt = _DT.dump_python
_KIND = LogEvent.KIND
_EVENT_KINDS = frozenset({"event", "metric", "alert", "pipeline_error"})
# LogEvent's fields by their wire names, in the model's order (the order `schemas.encode` writes)
_FIELDS = frozenset({"@timestamp", "event", "logtide", "labels", "message", "log", "host", "service", "trace",
                     "tags", "attributes"})
_NAMES_NOT_ALIASES = frozenset({"timestamp"})  # populate_by_name would read them as the field: not here
_EVENT_KEYS = frozenset({"id", "original", "ingested", "dataset", "kind", "duration"})
_META_KEYS = frozenset({"schema", "version", "flags", "parse_error"})
_LOG_KEYS = frozenset({"level", "logger", "file", "offset"})
_HOST_KEYS = frozenset({"name", "hostname", "ip"})
_SERVICE_KEYS = frozenset({"name", "environment", "version"})
_MAX_BYTES, _MAX_DEPTH = DEFAULT_LIMITS.max_bytes, DEFAULT_LIMITS.max_depth


_SERVICE_HOST = (0, 1)
_EPOCH_DAY = datetime(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class LogSeries:
    """The series one kind of log event feeds (same group labels, level and status class): the
    constant-valued ones as (key, metric, labels, value), and the latency series, whose value varies."""

    consts: tuple[tuple[str, str, dict[str, str], float], ...]
    latency: tuple[str, str, dict[str, str]] | None


class Unsure(Exception):
    """The record is not of a shape this lane decides: the reference path takes it."""


def _opt_str(v: Any) -> bool:
    return v is None or type(v) is str


def _str_list(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _event(e: Any, dt_text: Any) -> dict[str, Any]:
    if type(e) is not dict or not _EVENT_KEYS.issuperset(e):
        raise Unsure
    i, orig, ing, ds, kind, dur = (e.get("id"), e.get("original"), e.get("ingested"), e.get("dataset"),
                                   e.get("kind", "event"), e.get("duration"))
    if type(i) is not str or not _opt_str(orig) or not _opt_str(ds) or type(kind) is not str \
            or kind not in _EVENT_KINDS or not (dur is None or type(dur) is int) \
            or not (ing is None or type(ing) is str):
        raise Unsure
    out: dict[str, Any] = {"id": i}
    if orig is not None:
        out["original"] = orig
    if ing is not None:
        out["ingested"] = dt_text(ing)
    if ds is not None:
        out["dataset"] = ds
    out["kind"] = kind
    if dur is not None:
        out["duration"] = dur
    return out


def _meta(m: Any) -> dict[str, Any]:
    if type(m) is not dict or not _META_KEYS.issuperset(m):
        raise Unsure
    schema, version, flags, perr = m.get("schema"), m.get("version", 1), m.get("flags", ()), m.get("parse_error")
    if schema != _KIND or type(version) is not int or not _opt_str(perr):
        raise Unsure
    if flags != ():
        if not _str_list(flags):
            raise Unsure
        flags = list(flags)
    else:
        flags = []
    out = {"schema": schema, "version": version, "flags": flags}
    if perr is not None:
        out["parse_error"] = perr
    return out


def _log(lg: Any) -> tuple[Any, dict[str, Any] | None, Any, Any]:
    """(level, file block, logger, offset) of a `log` group."""
    if lg is None:
        return None, None, None, None
    if type(lg) is not dict or not _LOG_KEYS.issuperset(lg):
        raise Unsure
    level, logger, f, off = lg.get("level"), lg.get("logger"), lg.get("file"), lg.get("offset")
    if not _opt_str(level) or not _opt_str(logger) or not (off is None or (type(off) is int and off >= 0)):
        raise Unsure
    if f is not None and (type(f) is not dict or len(f) != 1 or type(f.get("path")) is not str):
        raise Unsure
    return level, f, logger, off


def _host(h: Any) -> dict[str, Any] | None:
    if h is None:
        return None
    if type(h) is not dict or not _HOST_KEYS.issuperset(h):
        raise Unsure
    name, hostname, ip = h.get("name"), h.get("hostname"), h.get("ip")
    if type(name) is not str or not _opt_str(hostname) or not (ip is None or _str_list(ip)):
        raise Unsure
    out: dict[str, Any] = {"name": name}
    if hostname is not None:
        out["hostname"] = hostname
    if ip is not None:
        out["ip"] = ip
    return out


def _service(s: Any) -> dict[str, Any] | None:
    if s is None:
        return None
    if type(s) is not dict or not _SERVICE_KEYS.issuperset(s):
        raise Unsure
    name, env, ver = s.get("name"), s.get("environment"), s.get("version")
    if type(name) is not str or not _opt_str(env) or not _opt_str(ver):
        raise Unsure
    out = {"name": name}
    if env is not None:
        out["environment"] = env
    if ver is not None:
        out["version"] = ver
    return out


class FastLog:
    """The plain-dict lane of `Stateless.log` (same source clocks, same marks); see the module doc."""

    def __init__(self, sl: Stateless) -> None:
        self.sl = sl
        self.enabled = True  # the caller's switch; see `usable`
        # (the enrichment tables, skew limits and configuration are read from `sl` on every record:
        # a configuration reload replaces them there, see `streams.reload`)
        self.group_by = tuple(sl.derive.group_by)
        self._gb = tuple(0 if g == "service" else 1 if g == "host" else g for g in self.group_by)
        self._series: dict[tuple[Any, ...], LogSeries] = {}  # (group labels, level, status class) ->
        self._dt_text: dict[str, str] = {}  # event.ingested: one value per shipper chunk
        self._sev: dict[Any, str] = {}
        self._now: datetime | None = None
        self._now_f = 0.0

    @property
    def usable(self) -> bool:
        """Switched on, and no GeoIP enrichment (that stays on the reference path)."""
        return self.enabled and self.sl.enrich.geo is None

    def _now_s(self, now: datetime) -> float:
        if now is not self._now:
            self._now, self._now_f = now, now.timestamp()
        return self._now_f

    def _ingested(self, s: str) -> str:
        out = self._dt_text.get(s)
        if out is None:
            if len(self._dt_text) > 1000:
                self._dt_text.clear()
            out = self._dt_text[s] = _dump_dt(_parse_dt(s), mode="json")
        return out

    def series(self, base: tuple[Any, ...], level: str, cls: Any) -> LogSeries:
        """The series of a log event's points, made by `Deriver` (so the very same keys): events by
        level, error ratio, then (with a status class) responses by class and latency."""
        ck = (base, level, cls)
        out = self._series.get(ck)
        if out is None:
            if len(self._series) > 100_000:
                self._series.clear()
            d = self.sl.derive
            labels = {dim: v for dim, v in zip(self.group_by, base, strict=True) if v is not None}
            err = 1.0 if level in _ERROR_LEVELS or cls == "5xx" else 0.0  # `enrich.is_error`
            pts = [d._point("log.events", labels, 0, 1.0, level=level), d._point("log.error_ratio", labels, 0, err)]
            latency = None
            if cls is not None:
                pts.append(d._point("http.responses", labels, 0, 1.0, status_class=str(cls)))
                p = d._point("http.request.duration_ms", labels, 0, 0.0)
                latency = (p.key, p.metric, p.labels)
            out = self._series[ck] = LogSeries(tuple((p.key, p.metric, p.labels, p.value) for p in pts), latency)
        return out

    def __call__(self, raw: bytes, now: datetime, partition: int | None) -> tuple[Any, ...] | None:
        """(enriched bytes, skew, untimed, source, event time ms, series, latency, event id), or None
        when unsure (the reference path takes the record). Series: the event's `LogSeries` (None when
        not windowed); latency: the value of its latency point (None when it has none)."""
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
        except Unsure:
            return None
        except Exception:  # whatever it is, the reference path decides it (and explains it)
            return None

    def _decide(self, d: dict[str, Any], now: datetime, partition: int | None) -> tuple[Any, ...]:
        # --- validate (the model's contract) ---
        extras: dict[str, Any] | None = None
        for k, v in () if len(d) <= 11 and _FIELDS.issuperset(d) else d.items():
            if k not in _FIELDS:
                if k in _NAMES_NOT_ALIASES:
                    raise Unsure
                if extras is None:
                    extras = {}
                extras[k] = v
        ts_text = d.get("@timestamp")
        message = d.get("message")
        if type(ts_text) is not str or type(message) is not str:
            raise Unsure
        ts = _parse_dt(ts_text)
        event = _event(d.get("event"), self._ingested)
        meta = _meta(d.get("logtide"))
        labels = d.get("labels", _EMPTY)
        if labels is not _EMPTY:
            if type(labels) is not dict or not all(type(v) is str for v in labels.values()):
                raise Unsure
        else:
            labels = {}
        level, file_block, logger, offset = _log(d.get("log"))
        host = _host(d.get("host"))
        service = _service(d.get("service"))
        trace = d.get("trace")
        if trace is not None and (type(trace) is not dict or len(trace) != 1 or type(trace.get("id")) is not str):
            raise Unsure
        tags = d.get("tags", _EMPTY)
        if tags is not _EMPTY:
            if not _str_list(tags):
                raise Unsure
        else:
            tags = []
        attrs = d.get("attributes", _EMPTY)
        if attrs is not _EMPTY:
            if type(attrs) is not dict:
                raise Unsure
        else:
            attrs = {}
        flags = meta["flags"]
        # --- validate: clock skew (against the wall clock; `skew_of` itself near the bounds) ---
        canonical = len(ts_text) == 32 and ts_text[26:] == "+00:00" and ts_text[10] == "T" and ts_text[19] == "." \
            and ts.microsecond
        if canonical:  # `ts.timestamp()` exactly (an int of microseconds / 10**6), without the tz calls
            tsf = (((ts.toordinal() - _EPOCH_DAY) * 86400 + ts.hour * 3600 + ts.minute * 60 + ts.second) * 1_000_000
                   + ts.microsecond) / 1_000_000
        else:
            tsf = ts.timestamp()  # the same for the UTC copy below: one instant
        sl = self.sl
        enrich = sl.enrich
        delta, pol = tsf - self._now_s(now), sl.policy
        if delta < pol.future_s - 1.0 and (pol.past_s is None or -delta < pol.past_s - 1.0):
            skew = None
        else:
            skew = skew_of(ts, now, pol)
            if skew is not None and SKEW_FLAG not in flags:
                flags.append(SKEW_FLAG)
        # --- enrich (as `Enricher.__call__`) ---
        if canonical:
            ts_out = ts_text[:26] + "Z"  # already UTC, microseconds: what pydantic writes, without asking it
        else:
            ts_out = _dump_dt(ts if ts.tzinfo is UTC else ts.astimezone(UTC), mode="json")
        sev = self._sev.get(level)
        if sev is None:
            sev = severity_of(level).value
            if len(self._sev) < 1000:
                self._sev[level] = sev
        if level is not None and level != sev:
            attrs.setdefault("log.level.original", level)
        host_name = host["name"] if host is not None else None
        path = file_block["path"] if file_block is not None else None
        mapped = enrich.rule_service(host_name, path, message, service is not None) if enrich._rules \
            else None
        if mapped is not None:
            service = {"name": mapped[0]}
            if mapped[1] is not None:
                service["environment"] = mapped[1]
        if enrich._static:
            labels = {**enrich._static, **labels}
        add_http_fields(extras or _EMPTY, attrs, event.get("duration"))
        if trace is None:
            tid = enrich.trace_id(attrs, message)
            if tid:
                trace = {"id": tid}
        # --- the document, in the model's field order ---
        log_block: dict[str, Any] = {"level": sev}
        if logger is not None:
            log_block["logger"] = logger
        if file_block is not None:
            log_block["file"] = file_block
        if offset is not None:
            log_block["offset"] = offset
        doc: dict[str, Any] = {"@timestamp": ts_out, "event": event, "logtide": meta,
                               "labels": labels, "message": message, "log": log_block}
        if host is not None:
            doc["host"] = host
        if service is not None:
            doc["service"] = service
        if trace is not None:
            doc["trace"] = trace
        doc["tags"] = tags
        doc["attributes"] = attrs
        if extras:
            for k, v in extras.items():
                if v is not None:
                    doc[k] = v
        # --- event time: sources and points (as `Stateless.log`) ---
        untimed = not has_event_time(flags)
        windowed = sl.cfg.derive.enabled and not untimed and SKEW_FLAG not in flags
        src = source_id(partition, host_name, path)
        t_ms = int(tsf * 1000)
        combo: LogSeries | None = None
        latency: float | None = None
        if windowed:
            gb = self._gb
            svc = service["name"] if service is not None else None
            base = (svc, host_name) if gb == _SERVICE_HOST else tuple(
                [svc if g == 0 else host_name if g == 1 else labels.get(g) for g in gb])
            cls = attrs.get("http.status_class")
            combo = self.series(base, sev, cls)
            if cls is not None:
                ms = attrs.get("duration_ms")
                if isinstance(ms, int | float):
                    latency = float(ms)
        data = orjson.dumps(doc)
        # the last step, after everything that could raise (a record handed to the reference path must
        # not have moved its source's clock): the source clock, which may flag an outlier
        if windowed and sl.observe(src, t_ms, flags, "log"):
            skew = SOURCE_SKEW
            data = orjson.dumps(doc)  # now with the flag
        return data, skew, untimed, src, t_ms, combo, latency, event["id"]


_ERROR_LEVELS = frozenset(s.value for s in ERROR_SEVERITIES)
_EMPTY: dict[str, Any] = {}
