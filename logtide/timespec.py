"""Time arguments of `replay` and `anomalies tail`: absolute or relative points in time, durations.

Pure functions (the caller passes `now`), so the rules are tested without a clock:

- ISO 8601 with a zone: `2026-11-30T08:00:00Z`, `2026-11-30T09:00:00+01:00` (a time without a zone is
  refused: it would silently mean the machine's zone or UTC depending on who reads it);
- epoch milliseconds: `1764489600000` (digits only, as Kafka stores record timestamps);
- relative to now, in the past: `-2h`, `30m`, `90s`, `1d`, `1h30m` (a leading `-` is optional: a
  replay or a tail looks back; `journalctl --since -2h` reads the same), and `now`.
"""

from __future__ import annotations

import re
from datetime import datetime

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: past it a time is a typo


class TimeSpecError(ValueError):
    """A time argument that cannot be read; the message says which forms are accepted."""


def parse_duration_ms(text: str) -> int:
    """`90s`, `30m`, `2h`, `1d`, `1h30m`, `500ms` -> milliseconds (no sign)."""
    t = text.strip().lower()
    if not t or not _DURATION.match(t):
        raise TimeSpecError(f"{text!r} is not a duration (use e.g. 90s, 30m, 2h, 1d, 1h30m)")
    ms = sum(float(n) * _UNIT_MS[u] for n, u in _PART.findall(t))
    if not ms <= MAX_MS:
        raise TimeSpecError(f"{text!r} is longer than any history (at most about 8000 years)")
    return round(ms)


def parse_time_ms(text: str, now_ms: int) -> int:
    """An absolute, epoch-millisecond or relative time -> epoch milliseconds."""
    t = text.strip()
    if not t:
        raise TimeSpecError("empty time")
    if t.lower() == "now":
        return now_ms
    if t.isascii() and t.isdigit():  # ("²".isdigit() is true)
        if int(t) > MAX_MS:
            raise TimeSpecError(f"{text!r} is past the year 9999 as epoch milliseconds")
        return int(t)
    body = t[1:] if t.startswith("-") else t
    if _DURATION.match(body.lower()):
        return now_ms - parse_duration_ms(body)
    try:
        dt = datetime.fromisoformat(t.replace("z", "Z"))
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is not a time: use ISO 8601 with a zone (2026-11-30T08:00:00Z), epoch milliseconds "
            "(1764489600000) or a time ago (-2h, 30m, 1d)"
        ) from None
    if dt.tzinfo is None:
        raise TimeSpecError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return round(dt.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds (what summaries and resume hints print)."""
    from datetime import UTC

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
