"""One table of log-level spellings -> `Severity`, used by the shipper's parsers and the streams'
enrichment alike (so an event's level does not depend on which stage normalised it).

Java's SEVERE maps to error (as OpenTelemetry maps java.util.logging SEVERE); syslog numbers 0..7
map by RFC 5424; anything else is `unknown`, never an error.
"""

from __future__ import annotations

from typing import Any

from logtide.schemas.models import Severity

SEVERITY_WORDS: dict[str, Severity] = {
    "emerg": Severity.emergency, "emergency": Severity.emergency, "panic": Severity.emergency,
    "alert": Severity.alert,
    "crit": Severity.critical, "critical": Severity.critical, "fatal": Severity.critical,
    "severe": Severity.error, "err": Severity.error, "error": Severity.error, "eror": Severity.error,
    "warn": Severity.warning, "warning": Severity.warning, "wrn": Severity.warning,
    "notice": Severity.notice,
    "info": Severity.info, "information": Severity.info, "informational": Severity.info, "inf": Severity.info,
    "debug": Severity.debug, "dbg": Severity.debug, "fine": Severity.debug, "config": Severity.debug,
    "trace": Severity.trace, "finer": Severity.trace, "finest": Severity.trace, "verbose": Severity.trace,
}  # fmt: skip
SYSLOG_SEVERITIES: tuple[Severity, ...] = (
    Severity.emergency, Severity.alert, Severity.critical, Severity.error,
    Severity.warning, Severity.notice, Severity.info, Severity.debug,
)  # fmt: skip


def severity_of(raw: Any) -> Severity:
    """The `Severity` of a level word or syslog number (int or digits); `unknown` otherwise."""
    if raw is None or isinstance(raw, bool):
        return Severity.unknown
    if isinstance(raw, int):
        return SYSLOG_SEVERITIES[raw] if 0 <= raw <= 7 else Severity.unknown
    word = str(raw).strip().lower()
    hit = SEVERITY_WORDS.get(word)
    if hit is not None:
        return hit
    if word.isdigit():
        return severity_of(int(word))
    return Severity.unknown
