"""Severity for the shipper's parsers: the one table in `schemas.severity`, as strings."""

from __future__ import annotations

from logtide.schemas.severity import SYSLOG_SEVERITIES, severity_of


def syslog_severity(code: int) -> str:
    return SYSLOG_SEVERITIES[code & 7].value


_BY_TEXT: dict[str, str] = {}  # a file uses a handful of spellings: one dict lookup per line


def normalize_severity(raw: object) -> str:
    """A `Severity` value for `raw`; unknown words map to `unknown`, never an error."""
    if type(raw) is str:
        hit = _BY_TEXT.get(raw)
        if hit is None:
            hit = severity_of(raw).value
            if len(_BY_TEXT) < 4096:  # bounded: arbitrary text in a level field must not grow it
                _BY_TEXT[raw] = hit
        return hit
    return severity_of(raw).value
