"""The pure parts of `logtide replay`: the time window to seek, what a record becomes on an NDJSON
output, event-time selection and the resume token. The Kafka and file adapters are in
`replay_command.py`.

Which time a record carries: a Kafka record's timestamp is the time the shipper *sent* it (the
producer's CreateTime), not the time in the log line. For live shipping the two differ by a second;
for history shipped late (a backfill of old files) they differ by days. `--by record-time` (the
default) selects on the record timestamp, which Kafka indexes; `--by event-time` selects on the
event's own `@timestamp`, seeking by record time widened by a margin that must cover how late the
records were shipped.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

By = Literal["record-time", "event-time"]


@dataclass(frozen=True)
class Window:
    """What to select (`[from_ms, to_ms)`) and the record-time range to seek for it."""

    from_ms: int
    to_ms: int | None
    by: By = "record-time"
    margin_ms: int | None = 0  # event-time only; None = no bound (read the topic to its end)

    def seek_range(self) -> tuple[int, int | None]:
        if self.by == "record-time":
            return self.from_ms, self.to_ms
        if self.margin_ms is None:
            return 0, None
        lo = max(0, self.from_ms - self.margin_ms)
        return lo, None if self.to_ms is None else self.to_ms + self.margin_ms


def check_window(from_ms: int, to_ms: int | None) -> None:
    """`--to` before `--from` is a mistake, not an empty range."""
    if to_ms is not None and to_ms < from_ms:
        raise ValueError("--to is before --from")


def ndjson_line(value: bytes | None) -> bytes | None:
    """The record value as one NDJSON line, or None when it is not JSON (malformed: counted, skipped).

    A value that is JSON on one line is written exactly as stored; one spread over several lines is
    re-encoded compactly (same JSON, one line)."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if b"\n" in value or b"\r" in value:
        return orjson.dumps(doc)
    return value


def event_time_ms(value: bytes | None) -> int | None:
    """The event's own `@timestamp` in epoch ms, or None when the record has no readable one."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    ts = doc.get("@timestamp") if isinstance(doc, dict) else None
    if not isinstance(ts, str):
        return None
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return None if dt.tzinfo is None else round(dt.timestamp() * 1000)


def encode_token(topic: str, window: Window, positions: dict[int, int]) -> str:
    """A resume token: the range and the next offset of every partition (base64url JSON)."""
    doc = {
        "topic": topic,
        "from": window.from_ms,
        "to": window.to_ms,
        "by": window.by,
        "margin": window.margin_ms,
        "positions": {str(p): o for p, o in sorted(positions.items())},
    }
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, Window, dict[int, int]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc: dict[str, Any] = orjson.loads(raw)
        if doc["by"] not in ("record-time", "event-time"):
            raise ValueError(doc["by"])
        to, margin = doc["to"], doc["margin"]
        window = Window(int(doc["from"]), None if to is None else int(to), doc["by"],
                        None if margin is None else int(margin))  # fmt: skip
        positions = {int(p): int(o) for p, o in doc["positions"].items()}
        return str(doc["topic"]), window, positions
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a replay resume token ({type(exc).__name__})") from None


@dataclass
class TimeMerge:
    """Merges partitions by record timestamp, holding records back until no partition still being read
    can bring an older one: a record goes out once every unfinished partition has been read up to its
    timestamp. (Within a partition, records come in offset order; an out-of-order timestamp there is
    merged where it falls.)"""

    _held: list[tuple[int, int, int, Any]] = field(default_factory=list)  # (timestamp, partition, offset, rec)
    _read_up_to: dict[int, int] = field(default_factory=dict)  # partition -> timestamp of its last record

    def add(self, partition: int, records: Iterable[Any], last_read_ts: int | None) -> None:
        """`records` to merge; `last_read_ts`: the timestamp of the last record read from the partition
        (kept or not), None when the batch had none."""
        for r in records:
            heapq.heappush(self._held, (r.timestamp, partition, r.offset, r))
        if last_read_ts is not None:
            self._read_up_to[partition] = last_read_ts

    def limit(self, unfinished: Iterable[int]) -> int | None:
        """Records up to this timestamp can go; None: nothing can (a partition not read yet)."""
        lim: int | None = None
        for p in unfinished:
            t = self._read_up_to.get(p)
            if t is None:
                return None
            lim = t if lim is None else min(lim, t)
        return lim if lim is not None else 1 << 62

    def take(self, limit: int | None) -> list[Any]:
        """Held records with timestamp <= limit, oldest first (ties: partition, then offset)."""
        out = []
        held = self._held
        while held and limit is not None and held[0][0] <= limit:
            out.append(heapq.heappop(held)[3])
        return out

    def take_all(self) -> list[Any]:
        return self.take(1 << 62)
