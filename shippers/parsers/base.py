"""What every parser shares: the error type and the field-name conventions of common loggers."""

from __future__ import annotations

from typing import Any


class ParseError(ValueError):
    """The line does not have the expected shape; the message says where it broke."""


MESSAGE_KEYS = ("message", "msg", "log", "text", "event")
LEVEL_KEYS = ("level", "lvl", "severity", "loglevel", "log.level", "levelname", "severity_text")
TS_KEYS = ("@timestamp", "timestamp", "time", "ts", "t", "datetime", "date", "asctime")
_HAS_FULL_TS = frozenset({"@timestamp", "timestamp", "ts", "datetime"})
LOGGER_KEYS = ("logger", "logger_name", "name", "log.logger", "module")


def pick(
    fields: dict[str, Any], configured: str | None, candidates: tuple[str, ...]
) -> tuple[str | None, Any]:
    """Remove and return (key, value) of the configured key, or the first candidate present."""
    if configured is not None:
        if configured in fields:
            return configured, fields.pop(configured)
        return None, None
    for key in candidates:
        if key in fields:
            return key, fields.pop(key)
    return None, None


def split_mapped(
    fields: dict[str, Any],
    message_key: str | None,
    level_key: str | None,
    ts_key: str | None,
    original: str,
) -> dict[str, Any]:
    """Common mapping for key/value formats (JSON, logfmt, regex groups)."""
    _, message = pick(fields, message_key, MESSAGE_KEYS)
    _, level = pick(fields, level_key, LEVEL_KEYS)
    if ts_key is None and "date" in fields and "time" in fields and not _HAS_FULL_TS.intersection(fields):
        # split date and time (loghub, many Java layouts): one timestamp, not today's date + time
        ts: Any = f"{fields.pop('date')} {fields.pop('time')}"
    else:
        _, ts = pick(fields, ts_key, TS_KEYS)
    _, logger = pick(fields, None, LOGGER_KEYS)
    out: dict[str, Any] = {"message": original if message is None else _text(message)}
    if ts is not None:
        out["ts"] = ts
    if level is not None:
        out["level"] = level
    if logger is not None and isinstance(logger, str):
        out["logger"] = logger
    if fields:
        out["attributes"] = fields
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)
