"""Severity words and numbers from every common logger, normalised to `schemas.Severity`."""

from __future__ import annotations

from logtide.schemas import Severity

_WORDS = {
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
_SYSLOG = [
    Severity.emergency, Severity.alert, Severity.critical, Severity.error,
    Severity.warning, Severity.notice, Severity.info, Severity.debug,
]  # fmt: skip


def syslog_severity(code: int) -> str:
    return _SYSLOG[code & 7].value


def normalize_severity(raw: object) -> str:
    """A `Severity` value for `raw`; unknown words map to `unknown`, never an error."""
    if raw is None:
        return Severity.unknown.value
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _SYSLOG[raw].value if 0 <= raw <= 7 else Severity.unknown.value
    word = str(raw).strip().lower()
    hit = _WORDS.get(word)
    if hit is not None:
        return hit.value
    if word.isdigit():
        return normalize_severity(int(word))
    return Severity.unknown.value
