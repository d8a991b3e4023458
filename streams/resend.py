"""Records a shipper sent twice, recognised by their id among a partition's recent records.

Why: delivery from the shipper is at least once. A shipper killed between Kafka's acknowledgement and
its next checkpoint (every 0.5 s by default) reads the lines after that checkpoint again on restart and
sends them again, with the same stable ids (host, file fingerprint, offset) and the same record key, so
into the same raw partition, shortly after the originals. Elasticsearch keeps one document per id, but a
window would count the line twice. The batch path keeps the ids of each raw partition's last
`capacity` records and leaves a record whose id is among them out of the windows (it is still forwarded:
the sinks write by id).

When a partition is assigned, the reader first reads back up to `LOOKBACK` records before its committed
offset only to learn their ids (`RawReader`), so a restarted or rebalanced worker knows what its
predecessor had just counted. A record sent again later than `capacity` records after its original is
counted again (bounded memory); with the shipper's half-second checkpoints that takes a partition
receiving about 100,000 records a second.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

CAPACITY = 50_000  # recent record ids remembered per raw partition (about 4 MB)
LOOKBACK = 50_000  # records read back before the committed offset when a partition is assigned


class RecentIds:
    """The ids of the last `capacity` records of one partition (their hashes: ids only need to be
    compared within this process)."""

    __slots__ = ("_order", "_seen", "capacity")

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def seen(self, event_id: str) -> bool:
        """True when `event_id` is among the recent ids; otherwise it becomes one of them."""
        h = hash(event_id)
        if h in self._seen:
            return True
        self._seen.add(h)
        self._order.append(h)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return False

    def __len__(self) -> int:
        return len(self._order)


def record_id(value: bytes) -> str | None:
    """The event id of a raw record (`event.id` of a log event or metric sample), None when it has none
    (a record the batch path will dead-letter anyway)."""
    try:
        d = orjson.loads(value)
        i = d["event"]["id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return i if isinstance(i, str) else None


def split_lookback(records: list[Any], until: int) -> tuple[list[Any], list[Any]]:
    """(records before `until`, read back only to learn their ids; the records from `until` on)."""
    n = next((i for i, r in enumerate(records) if r.offset >= until), len(records))
    return records[:n], records[n:]
