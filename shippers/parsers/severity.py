"""Severity for the shipper's parsers: the one table in `schemas.severity`, as strings."""

from __future__ import annotations

from logtide.schemas.severity import SYSLOG_SEVERITIES, severity_of


def syslog_severity(code: int) -> str:
    return SYSLOG_SEVERITIES[code & 7].value


def normalize_severity(raw: object) -> str:
    """A `Severity` value for `raw`; unknown words map to `unknown`, never an error."""
    return severity_of(raw).value
