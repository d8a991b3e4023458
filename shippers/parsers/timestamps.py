"""Event time from text: ISO 8601 fast (ciso8601), named formats, strptime formats, `auto`.

Formats are tried in the configured order; there is no lenient fallback unless `auto` is listed.
`auto` accepts ISO 8601 / RFC 3339, epoch numbers (s, ms, us or ns by magnitude), then what
dateutil reads (e.g. `May 1 2024 3pm`, `17/06/09 20:10:40`). A dateutil guess whose numeric date
reads differently day-first or year-first is flagged `ts_ambiguous` (name the format instead).
Year-less formats (`rfc3164`, strptime formats without `%Y`/`%y`) take their year from a reference:
the current time, the file's modification time (`year: file_mtime`) or a fixed `year`; a date more
than a day after the reference belongs to the year before (the New Year rollover).

Results are cached per raw string: access logs repeat the same second many times, so the hot path
is a dict lookup. ISO 8601 in UTC as most JSON loggers write it (`2026-11-26T12:00:00.123Z`, a new
string on every line) skips the cache: checked by ciso8601, the output is the input's own digits.
Unparseable input returns None and the caller flags `ts_unparsed`.
"""

from __future__ import annotations

import contextlib
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


def canonical_utc(raw: str) -> str | None:
    """`_iso_out` of `raw` without building a datetime, for `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]` with `Z`
    or `+00:00` (None for any other shape, or an invalid date: the general path decides)."""
    if raw.endswith("Z"):
        body = raw[:-1]
    elif raw.endswith("+00:00"):
        body = raw[:-6]
    else:
        return None
    n = len(body)
    if n == 19:
        frac = ".000000"
    elif n in {23, 26} and body[19] == ".":
        frac = body[19:] + "000" if n == 23 else body[19:]
    else:
        return None
    if body[10] != "T" or body[11:13] == "24":  # hour 24 is the next day's 00 for ciso8601
        return None
    try:
        ciso8601.parse_datetime(raw)  # the digits and the calendar checked
    except ValueError:
        return None
    return body[:19] + frac + "+00:00"


def is_known_format(fmt: str) -> bool:
    """A named format or a strptime format (has a % directive)."""
    return fmt in NAMED or "%" in fmt


def _yearless(fmt: str) -> bool:
    return fmt == "rfc3164" or (fmt not in NAMED and "%Y" not in fmt and "%y" not in fmt and "%G" not in fmt)


class TimestampParser:
    """Parses one timestamp field to an ISO 8601 UTC string using `formats` in order.

    `year`: None (the current time is the reference of year-less formats), an int (that year),
    or set `reference` (e.g. a file's modification time) before parsing.
    """

    def __init__(
        self,
        formats: list[str],
        timezone: str = "UTC",
        now: Callable[[], datetime] | None = None,
        year: int | None = None,
    ) -> None:
        self.formats = list(formats) or ["auto"]
        zone = du_tz.gettz(timezone)
        if zone is None:
            raise ValueError(f"unknown time zone {timezone!r}")
        self.zone: tzinfo = zone
        self._now = now or (lambda: datetime.now(UTC))
        self.year = year
        self.reference: datetime | None = None  # set per file by the caller (year: file_mtime)
        self.uses_year = any(_yearless(f) for f in self.formats)
        self._cached = lru_cache(maxsize=8192)(self._parse_flagged)
        self._iso_first = self.formats[0] in ("iso8601", "auto")  # both read ISO 8601 first, unflagged

    def parse_flagged(self, raw: object) -> tuple[str | None, bool]:
        """(ISO 8601 UTC or None, ambiguous guess?)."""
        if self._iso_first and type(raw) is str and len(raw) <= 32:
            fast = canonical_utc(raw)
            if fast is not None:
                return fast, False
        if self.uses_year and self.reference is not None:
            return self._cached(raw, self.reference.toordinal())
        return self._cached(raw, None)

    def parse(self, raw: object) -> str | None:
        return self.parse_flagged(raw)[0]

    def _aware(self, dt: datetime) -> datetime:
        return dt.replace(tzinfo=self.zone) if dt.tzinfo is None else dt

    def _with_year(self, dt: datetime) -> datetime:
        """No year in the text: the reference's year, or the year before if that lands over a day
        after the reference (a December line read in January)."""
        if self.year is not None:
            return self._aware(dt.replace(year=self.year))
        ref = self.reference or self._now()
        dt = self._aware(dt.replace(year=ref.year))
        if dt - ref > timedelta(days=1):
            dt = dt.replace(year=ref.year - 1)
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
            if _yearless(fmt):
                return self._with_year(datetime.strptime(raw, fmt).replace(year=2000))  # Feb 29 parses
            return self._aware(datetime.strptime(raw, fmt))
        except (
            ValueError,
            ArithmeticError,
            TypeError,
            OSError,
        ):  # decimal errors in dateutil; epochs past the C range
            return None

    def _auto(self, raw: str) -> datetime | None:
        self._ambiguous = False
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
            dt = du_parser.parse(raw, fuzzy=False)
        except (ValueError, ArithmeticError, du_parser.ParserError):
            return None
        # "17/06/09": 2009-06-17? 2017-06-09? "081109": 2009-08-11? 2008-11-09? Flag when the
        # day-first or year-first reading gives another date.
        readings = {dt.date()}
        for kw in ({"dayfirst": True}, {"yearfirst": True}, {"dayfirst": True, "yearfirst": True}):
            with contextlib.suppress(ValueError, ArithmeticError, du_parser.ParserError):
                readings.add(du_parser.parse(raw, fuzzy=False, **kw).date())
        self._ambiguous = len(readings) > 1
        return self._aware(dt)

    def _parse_flagged(self, raw: object, _ref: int | None) -> tuple[str | None, bool]:
        if isinstance(raw, datetime):
            return _iso_out(self._aware(raw)), False
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = repr(raw)
        if not isinstance(raw, str) or not raw.strip():
            return None, False
        raw = raw.strip()
        if len(raw) > MAX_TIMESTAMP_CHARS:  # no timestamp is this long; dateutil would take its time
            return None, False
        for fmt in self.formats:
            self._ambiguous = False
            dt = self._one(fmt, raw)
            if dt is not None:
                try:
                    return _iso_out(dt), self._ambiguous
                except (ValueError, OverflowError):
                    return None, False
        return None, False
