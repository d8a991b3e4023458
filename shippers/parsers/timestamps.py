"""Event time from text: ISO 8601 fast (ciso8601), named formats, strptime formats, then dateutil.

Results are cached per raw string: access logs repeat the same second many times, so the hot path
is a dict lookup. Unparseable input returns None and the caller flags `ts_unparsed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache

import ciso8601
from dateutil import parser as du_parser
from dateutil import tz as du_tz

NAMED = {"iso8601", "rfc3164", "clf", "unix", "unix_ms", "apache_error", "auto"}

#: Longer strings are refused unparsed (fuzzing found dateutil slow on kilobytes of digits).
MAX_TIMESTAMP_CHARS = 128


def _iso_out(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


class TimestampParser:
    """Parses one timestamp field to an ISO 8601 UTC string using `formats` in order."""

    def __init__(
        self, formats: list[str], timezone: str = "UTC", now: Callable[[], datetime] | None = None
    ) -> None:
        self.formats = list(formats) or ["auto"]
        zone = du_tz.gettz(timezone)
        if zone is None:
            raise ValueError(f"unknown time zone {timezone!r}")
        self.zone: tzinfo = zone
        self._now = now or (lambda: datetime.now(UTC))
        self.parse = lru_cache(maxsize=8192)(self._parse)

    def _aware(self, dt: datetime) -> datetime:
        return dt.replace(tzinfo=self.zone) if dt.tzinfo is None else dt

    def _with_year(self, dt: datetime) -> datetime:
        """RFC 3164 has no year: take the current one, or last year if that lands over a day ahead."""
        now = self._now()
        dt = self._aware(dt.replace(year=now.year))
        if dt - now > timedelta(days=1):
            dt = dt.replace(year=now.year - 1)
        return dt

    def _one(self, fmt: str, raw: str) -> datetime | None:
        try:
            if fmt == "iso8601":
                return self._aware(ciso8601.parse_datetime(raw))
            if fmt == "rfc3164":
                return self._with_year(datetime.strptime(" ".join(raw.split()), "%b %d %H:%M:%S"))
            if fmt == "clf":
                return datetime.strptime(raw, "%d/%b/%Y:%H:%M:%S %z")
            if fmt == "apache_error":
                return self._aware(datetime.strptime(raw, "%a %b %d %H:%M:%S %Y"))
            if fmt == "unix":
                return datetime.fromtimestamp(float(raw), UTC)
            if fmt == "unix_ms":
                return datetime.fromtimestamp(float(raw) / 1000.0, UTC)
            if fmt == "auto":
                return self._auto(raw)
            return self._aware(datetime.strptime(raw, fmt))
        except (ValueError, ArithmeticError, TypeError, OSError):  # decimal errors in dateutil; epochs past the C range
            return None

    def _auto(self, raw: str) -> datetime | None:
        try:
            return self._aware(ciso8601.parse_datetime(raw))
        except ValueError:
            pass
        try:
            num = float(raw)
        except ValueError:
            num = None
        if num is not None:
            if not math.isfinite(num):  # "1e999" or 400 digits: inf would never shrink below
                return None
            # seconds, milliseconds, microseconds or nanoseconds since the epoch, by magnitude
            while num > 1e11:
                num /= 1000.0
            return datetime.fromtimestamp(num, UTC)
        try:
            return self._aware(du_parser.parse(raw, fuzzy=False))
        except (ValueError, ArithmeticError, du_parser.ParserError):
            return None

    def _parse(self, raw: object) -> str | None:
        if isinstance(raw, datetime):
            return _iso_out(self._aware(raw))
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = repr(raw)
        if not isinstance(raw, str) or not raw.strip():
            return None
        raw = raw.strip()
        if len(raw) > MAX_TIMESTAMP_CHARS:  # no timestamp is this long; dateutil would take its time
            return None
        for fmt in self.formats:
            dt = self._one(fmt, raw)
            if dt is not None:
                try:
                    return _iso_out(dt)
                except (ValueError, OverflowError):
                    return None
        return None
