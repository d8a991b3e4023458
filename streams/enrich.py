"""Enrich: make log events comparable across sources before anything counts them.

UTC timestamps, one severity vocabulary, a `service.name` for every event (from host, path or message
rules), static labels, and derived fields that windows and dashboards group by: HTTP status class,
durations in milliseconds, trace ids found in the text, and GeoIP when a MaxMind database is given.
"""

from __future__ import annotations

import fnmatch
import math
import re
from datetime import UTC
from typing import Any, Protocol

from logtide.schemas import LogEvent, Service, Severity, Trace
from logtide.schemas.severity import severity_of as normalise_severity  # the one table
from logtide.streams.config import StreamsConfig

ERROR_SEVERITIES = frozenset({Severity.emergency, Severity.alert, Severity.critical, Severity.error})

# Fields seen in parsed access/app logs, with the factor that turns them into milliseconds.
_DURATION_FIELDS: tuple[tuple[str, float], ...] = (
    ("duration_ms", 1.0), ("latency_ms", 1.0), ("response_time_ms", 1.0), ("elapsed_ms", 1.0),
    ("request_time", 1000.0), ("upstream_response_time", 1000.0), ("duration_s", 1000.0),
    ("duration_us", 1e-3), ("duration_ns", 1e-6),
)
_STATUS_FIELDS = ("status", "status_code", "http_status", "response_code")


def status_class(code: Any) -> str | None:
    """'2xx'..'5xx' for an HTTP status code, None when it is not one."""
    try:
        n = int(code)
    except (TypeError, ValueError):
        return None
    return f"{n // 100}xx" if 100 <= n <= 599 else None


_STATUS_CLASSES = {n: f"{n // 100}xx" for n in range(100, 600)}  # status_class of every int code it accepts


class GeoReader(Protocol):
    """What enrichment needs of a MaxMind reader (`maxminddb.Reader`)."""

    def get(self, ip: str) -> Any: ...


def open_geoip(path: str) -> GeoReader:
    """Open a MaxMind database; needs the `maxminddb` package (optional dependency)."""
    try:
        import maxminddb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("streams.geoip_db is set but the maxminddb package is not installed") from exc
    return maxminddb.open_database(path)


def _get_path(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class Enricher:
    """Compiled enrichment rules; `__call__` enriches one event in place and returns it."""

    def __init__(self, cfg: StreamsConfig, geo: GeoReader | None = None) -> None:
        self.cfg = cfg
        self._rules = [
            (r, re.compile(r.regex) if r.regex else None) for r in cfg.services
        ]
        self._trace = [re.compile(p) for p in cfg.trace_id_patterns]
        self._static = dict(cfg.static_labels)
        self._geo = geo if geo is not None else (open_geoip(str(cfg.geoip_db)) if cfg.geoip_db else None)

    @property
    def geo(self) -> GeoReader | None:
        """The open GeoIP reader (handed on when the rules are rebuilt on a configuration reload)."""
        return self._geo

    def service_for(self, ev: LogEvent) -> tuple[str, str | None] | None:
        """(service, environment) of the first matching rule, or None."""
        return self.rule_service(ev.host.name if ev.host else None,
                                 ev.log.file.path if ev.log and ev.log.file else None,
                                 ev.message, ev.service is not None)

    def rule_service(self, host: str | None, path: str | None, message: str,
                     has_service: bool) -> tuple[str, str | None] | None:
        """`service_for` on plain values (shared with the plain-dict path, `streams.fast_log`)."""
        for rule, rx in self._rules:
            if rule.host is not None:
                hit = host is not None and fnmatch.fnmatchcase(host, rule.host)
            elif rule.path is not None:
                hit = path is not None and fnmatch.fnmatchcase(path, rule.path)
            else:
                hit = rx is not None and rx.search(message) is not None
            if hit and (not has_service or rule.override):
                return rule.service, rule.environment
            if hit:
                return None
        return None

    def trace_id(self, attrs: dict[str, Any], message: str) -> str | None:
        """The trace id of an event without a `trace` block: from the attributes, else the message."""
        tid = attrs.get("trace_id") or attrs.get("traceId")
        if not isinstance(tid, str):
            tid = None
            for rx in self._trace:
                m = rx.search(message)
                if m:
                    tid = m.group(1)
                    break
        return tid.lower() if tid else None

    def __call__(self, ev: LogEvent) -> LogEvent:
        """Enrich `ev` in place (it is the caller's freshly decoded copy) and return it."""
        if ev.timestamp.tzinfo is not UTC:
            ev.timestamp = ev.timestamp.astimezone(UTC)
        # severity
        original = ev.log.level if ev.log else None
        sev = normalise_severity(original)
        if ev.log is None:
            from logtide.schemas.models import LogInfo

            ev.log = LogInfo()
        ev.log.level = sev.value
        if original is not None and original != sev.value:
            ev.attributes.setdefault("log.level.original", original)
        # service
        mapped = self.service_for(ev)
        if mapped is not None:
            ev.service = Service(name=mapped[0], environment=mapped[1])
        # labels: the event's own win over static ones
        if self._static:
            ev.labels = {**self._static, **ev.labels}
        extra = ev.__pydantic_extra__ or {}
        attrs = ev.attributes
        add_http_fields(extra, attrs, ev.event.duration)
        # trace id
        if ev.trace is None:
            tid = self.trace_id(attrs, ev.message)
            if tid:
                ev.trace = Trace(id=tid)
        # GeoIP
        if self._geo is not None:
            self._add_geo(ev, extra)
        return ev

    def _add_geo(self, ev: LogEvent, extra: dict[str, Any]) -> None:
        ip = _get_path(extra, "source.ip") or _get_path(extra, "client.ip") or ev.attributes.get("remote_addr")
        if not isinstance(ip, str):
            return
        try:
            rec = self._geo.get(ip) if self._geo else None
        except ValueError:
            return
        if not rec:
            return
        geo: dict[str, Any] = {}
        if (c := rec.get("country")) and c.get("iso_code"):
            geo["country_iso_code"] = c["iso_code"]
        if (c := rec.get("city")) and (n := c.get("names", {}).get("en")):
            geo["city_name"] = n
        if (loc := rec.get("location")) and "latitude" in loc:
            geo["location"] = {"lat": loc["latitude"], "lon": loc["longitude"]}
        if geo:
            src = extra.get("source") if isinstance(extra.get("source"), dict) else {"ip": ip}
            src = {**src, "geo": geo}
            setattr(ev, "source", src)  # noqa: B010 - pydantic extra field


def add_http_fields(extra: dict[str, Any], attrs: dict[str, Any], duration_ns: int | None) -> None:
    """HTTP status class (and code) and the duration in ms, into `attrs` (in place); `extra` holds the
    event's fields without a model home (`http.response.status_code`, `http.request.duration_ms`)."""
    # HTTP status class (the hot path of every access log: loops, not generators; ints by table)
    code = _get_path(extra, "http.response.status_code") if "http" in extra else None
    if code is None:
        for f in _STATUS_FIELDS:
            if f in attrs:
                code = attrs[f]
                break
    cls = _STATUS_CLASSES.get(code) if type(code) is int else status_class(code)
    if cls is not None:
        attrs["http.status_class"] = cls
        attrs.setdefault("http.status_code", int(code))
    # durations in ms
    ms = duration_ms(extra, duration_ns, attrs)
    if ms is not None:
        attrs["duration_ms"] = ms


def duration_ms(extra: dict[str, Any], duration_ns: int | None, attrs: dict[str, Any]) -> float | None:
    v = _get_path(extra, "http.request.duration_ms") if "http" in extra else None
    if v is not None:
        return _num(v, 1.0)
    if duration_ns is not None:
        return duration_ns / 1e6
    for name, factor in _DURATION_FIELDS:
        if name in attrs:
            ms = _num(attrs[name], factor)
            if ms is not None:
                return ms
    return None


def _num(v: Any, factor: float) -> float | None:
    try:
        x = float(v) * factor
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def is_error(ev: LogEvent) -> bool:
    """An error-or-worse event, or a 5xx response."""
    if ev.log is not None and normalise_severity(ev.log.level) in ERROR_SEVERITIES:
        return True
    return ev.attributes.get("http.status_class") == "5xx"
