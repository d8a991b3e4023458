"""Builds the wire form of `schemas.LogEvent` and `schemas.MetricSample` directly as dicts.

Building pydantic models per line would cost more than everything else on the hot path together,
so events are plain dicts passed to `orjson.dumps`; the tests validate their shape against the
models. `event.id` is `schemas.stable_id(host, file fingerprint, byte offset)`: a line shipped
twice (after a crash) gets the same id, so the sinks deduplicate it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from logtide.schemas import SCHEMA_VERSION, LogEvent, MetricSample, StableIdPrefix, stable_id
from logtide.shippers.config import LogInputConfig
from logtide.shippers.line_reader import decode_line
from logtide.shippers.parsers import DEFAULT_TS_FORMATS, ParseError, make_parser
from logtide.shippers.parsers.severity import normalize_severity
from logtide.shippers.parsers.timestamps import TimestampParser

_dumps = orjson.dumps
LOG_KIND = LogEvent.KIND
METRIC_KIND = MetricSample.KIND
_ECS_GROUPS_RESERVED = {"@timestamp", "event", "logtide", "labels", "message", "log", "host", "service", "tags",
                        "attributes", "trace"}  # fmt: skip


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


IdHasher = StableIdPrefix  # stable_id(host, fp_id, offset): IdHasher(host, fp_id)(offset)


def host_block(name: str) -> dict[str, Any]:
    return {"name": name, "hostname": name}


class LogEventBuilder:
    """Turns one input's lines into encoded LogEvent bytes."""

    def __init__(self, cfg: LogInputConfig, host: dict[str, Any]) -> None:
        self.cfg = cfg
        self.host = host
        self.dataset = cfg.name
        self.plain = cfg.parser.type == "plain" and not cfg.parser.timestamp_formats
        self.parse = make_parser(cfg.parser)
        formats = cfg.parser.timestamp_formats or DEFAULT_TS_FORMATS[cfg.parser.type] or ["auto"]
        year = cfg.parser.year
        self.ts = TimestampParser(formats, cfg.parser.timezone, year=year if isinstance(year, int) else None)
        self.year_from_mtime = year == "file_mtime" and self.ts.uses_year
        self.host_field = cfg.parser.host_field
        self.service_field = cfg.parser.service_field
        self.labels = dict(cfg.labels)
        self.fields = dict(cfg.fields)
        self.service = cfg.service.model_dump(exclude_none=True) if cfg.service else None

    def encode_plain(
        self, lines: list[Any], key: bytes, ids: IdHasher, path_block: dict[str, Any], records: list[Any]
    ) -> list[str]:
        """The hot path for plain inputs: many lines, one loop, no per-line calls; returns the flags seen.

        A plain event differs from line to line only in its offset, id and message: the rest is
        encoded once per call and the event is joined from bytes (orjson encodes the message), the
        same JSON document as `build` gives, keys in another order. Flagged lines take `build`.
        """
        dumps = _dumps
        append = records.append
        ingested = now_iso()
        common: dict[str, Any] = {"@timestamp": ingested, "host": self.host}
        if self.labels:
            common["labels"] = self.labels
        if self.service:
            common["service"] = self.service
        if self.fields:
            common["attributes"] = self.fields
        common["logtide"] = {"schema": LOG_KIND, "version": SCHEMA_VERSION, "flags": []}
        head = dumps(common)[:-1] + b',"log":{"file":' + dumps(path_block) + b',"offset":'
        mid = (
            b'},"event":{"ingested":"'
            + ingested.encode()
            + b'","dataset":'
            + dumps(self.dataset)
            + b',"id":"'
        )
        join = b"".join
        id_hex = ids.hex_of_repr  # ids(start) as bytes, from the offset's digits computed once
        flagged: list[str] = []
        for start, _stop, raw, truncated in lines:
            if not raw:
                continue  # empty lines carry nothing (as in Filebeat); their bytes still count as read
            if not truncated:
                try:
                    msg = dumps(raw.decode())
                except UnicodeDecodeError:
                    pass
                else:
                    off = str(start).encode()
                    event = (head, off, mid, id_hex(off), b'"},"message":', msg, b"}")
                    append((key, join(event)))
                    continue
            text, flags = decode_line(raw, truncated)
            append((key, self.build(text, start, flags, path_block, ids(start), ingested)[0]))
            flagged.extend(flags)
        return flagged

    def build(  # noqa: PLR0917 - the hot path: positional arguments are measurably cheaper
        self,
        text: str,
        offset: int,
        flags: list[str],
        path_block: dict[str, Any],
        event_id: str,
        ingested: str,
    ) -> tuple[bytes, bool]:
        """(encoded event, parse failed?) for one line or multiline event."""
        failed = False
        if self.plain:
            ev: dict[str, Any] = {
                "@timestamp": ingested,
                "event": {"id": event_id, "ingested": ingested, "dataset": self.dataset},
                "logtide": {"schema": LOG_KIND, "version": SCHEMA_VERSION, "flags": flags},
                "message": text,
                "log": {"file": path_block, "offset": offset},
                "host": self.host,
            }
        else:
            ev, failed = self._parsed(text, offset, flags, path_block, event_id, ingested)
        if self.labels:
            ev["labels"] = self.labels
        if self.service and "service" not in ev:
            ev["service"] = self.service
        if self.fields:
            attrs = ev.get("attributes")
            ev["attributes"] = {**self.fields, **attrs} if attrs else self.fields
        try:
            return _dumps(ev), failed
        except TypeError as exc:  # a parsed value JSON cannot carry (an integer past 64 bits): never a crash
            return self._unencodable(ev, text, exc), True

    def _unencodable(self, ev: dict[str, Any], text: str, exc: TypeError) -> bytes:
        for key in ("attributes", "http", "process", "url", "source", "user", "user_agent"):
            ev.pop(key, None)
        meta = ev["logtide"]
        if "parse_failure" not in meta["flags"]:
            meta["flags"].append("parse_failure")
        meta["parse_error"] = f"not encodable: {exc}"
        ev["event"]["original"] = text
        ev["message"] = text
        ev["tags"] = ["_parse_failure"]
        return _dumps(ev)

    def _parsed(  # noqa: PLR0917
        self,
        text: str,
        offset: int,
        flags: list[str],
        path_block: dict[str, Any],
        event_id: str,
        ingested: str,
    ) -> tuple[dict[str, Any], bool]:
        event: dict[str, Any] = {"id": event_id, "ingested": ingested, "dataset": self.dataset}
        meta: dict[str, Any] = {"schema": LOG_KIND, "version": SCHEMA_VERSION, "flags": flags}
        log: dict[str, Any] = {"file": path_block, "offset": offset}
        ev: dict[str, Any] = {
            "@timestamp": ingested,
            "event": event,
            "logtide": meta,
            "log": log,
            "host": self.host,
        }
        try:
            fields = self.parse(text)
        except ParseError as exc:
            flags.append("parse_failure")
            meta["parse_error"] = str(exc)
            event["original"] = text
            ev["message"] = text
            ev["tags"] = ["_parse_failure"]
            return ev, True
        except Exception as exc:  # a parser bug must not drop the line
            flags.append("parse_failure")
            meta["parse_error"] = f"{type(exc).__name__}: {exc}"
            event["original"] = text
            ev["message"] = text
            ev["tags"] = ["_parse_failure"]
            return ev, True
        ev["message"] = fields["message"]
        raw_ts = fields.get("ts")
        if raw_ts is None:
            flags.append("ts_missing")
        else:
            iso, ambiguous = self.ts.parse_flagged(raw_ts)
            if iso is None:
                flags.append("ts_unparsed")
                event["original"] = text
                fields.setdefault("attributes", {})["timestamp_raw"] = str(raw_ts)
            else:
                ev["@timestamp"] = iso
                if ambiguous:  # `auto` guessed a numeric date that reads otherwise day- or year-first
                    flags.append("ts_ambiguous")
                    fields.setdefault("attributes", {})["timestamp_raw"] = str(raw_ts)
        level = fields.get("level")
        if level is not None:
            log["level"] = normalize_severity(level)
        logger = fields.get("logger")
        if logger:
            log["logger"] = logger
        attrs = fields.get("attributes")
        if attrs and (self.host_field or self.service_field):
            host = _take(attrs, self.host_field)
            if host is not None:  # the host the line is about, not the one shipping it
                ev["host"] = {"name": str(host), "hostname": str(host)}
            service = _take(attrs, self.service_field)
            if service is not None:
                ev["service"] = {**(self.service or {}), "name": str(service)}
        if attrs:
            ev["attributes"] = attrs
        ecs = fields.get("ecs")
        if ecs:
            for k, v in ecs.items():
                if k not in _ECS_GROUPS_RESERVED:
                    ev[k] = v
        return ev, False


def _take(attrs: dict[str, Any], dotted: str | None) -> Any:
    """Remove and return the value at `a.b.c` in parsed attributes (None if absent or not a leaf)."""
    if not dotted:
        return None
    node: Any = attrs
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return None
    value = node.get(leaf)
    if value is None or isinstance(value, dict | list):
        return None
    return node.pop(leaf)


def metric_event(  # noqa: PLR0917
    host: dict[str, Any],
    name: str,
    value: float,
    mtype: str = "gauge",
    unit: str | None = None,
    labels: dict[str, str] | None = None,
    ts: str | None = None,
    dataset: str = "host",
    flags: list[str] | None = None,
) -> bytes | None:
    """Encoded MetricSample, or None for a non-finite value (the schema refuses NaN and inf)."""
    if not math.isfinite(value):
        return None
    ts = ts or now_iso()
    labels = labels or {}
    metric: dict[str, Any] = {"name": name, "value": float(value), "type": mtype}
    if unit:
        metric["unit"] = unit
    ev = {
        "@timestamp": ts,
        "event": {
            "id": stable_id(host["name"], name, sorted(labels.items()), ts),
            "kind": "metric",
            "dataset": dataset,
            "ingested": ts,
        },
        "logtide": {"schema": METRIC_KIND, "version": SCHEMA_VERSION, "flags": flags or []},
        "labels": labels,
        "metric": metric,
        "host": host,
    }
    return _dumps(ev)
