"""Reading one topic between two record timestamps, partition by partition (`replay`, `anomalies tail`,
the subscriber API).

How a range `[from, to)` becomes offsets, per partition (the plan is pure: `plan_partition`):

- start: the first offset whose record timestamp is at or past `from` (`offsets_for_times`); a lookup
  that returns nothing means no record that late yet, so the partition starts at its end;
- stop: the first offset whose record timestamp is at or past `to` (the same lookup); when it returns
  nothing the partition stops at its end as of the start (its high watermark), unless following;
- following, records appended after the reader started count as at or past `from` whatever their
  timestamp (they arrived "from now on"; a producer may stamp them with an earlier event time);
- inside that offset range a record is kept only when `from <= timestamp < to`, so the range is exact
  even for a producer that set an out-of-order timestamp inside it. (A record with an in-range
  timestamp stored *before* the start offset, behind a later one, is not found: Kafka's time index
  only answers "first offset at or past T". kcat's `-o s@T -o e@T` has the same limit.)

The adapter (`RangeReader`) uses a plain consumer: no consumer group, nothing committed. A partition's
position moves past a batch only when the caller asks for the next one (it has handled it), so a stop after any batch can be resumed
exactly, and a broker restart is ridden out by the client's reconnects (positions are ours, not the
broker's), without loss or duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


class UnknownTopic(LookupError):
    """The topic does not exist on the cluster (it is never auto-created by a read)."""


async def topic_partitions(client_kwargs: dict[str, Any], topic: str) -> list[int]:
    """The topic's partition numbers; `UnknownTopic` when it does not exist. Existence is checked on
    the list of all topics first: a metadata request naming a missing topic may auto-create it."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**{k: v for k, v in client_kwargs.items() if k != "group_id"})
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            raise UnknownTopic(topic)
        desc = await admin.describe_topics([topic])
        return sorted(p["partition"] for d in desc if d["topic"] == topic for p in d["partitions"])
    finally:
        await admin.close()


@dataclass
class PartitionPlan:
    """Offsets to read in one partition: `[start, stop)`, `stop` None = open (following)."""

    partition: int
    start: int
    stop: int | None
    position: int = 0
    end_at_open: int | None = None  # the partition's end when the plan was made

    def __post_init__(self) -> None:
        self.position = self.start

    @property
    def empty(self) -> bool:
        return self.stop is not None and self.start >= self.stop

    @property
    def finished(self) -> bool:
        return self.stop is not None and self.position >= self.stop

    @property
    def planned(self) -> int | None:
        """Offsets in the plan (an upper bound of the records: markers and out-of-range ones count)."""
        return None if self.stop is None else max(0, self.stop - self.start)


def plan_partition(
    partition: int,
    end: int,
    start_lookup: int | None,
    stop_lookup: int | None,
    *,
    follow: bool,
    resume_at: int | None = None,
) -> PartitionPlan:
    """The offsets to read in one partition from its lookups (see the module docstring)."""
    start = start_lookup if start_lookup is not None else end
    if resume_at is not None:
        start = max(start, resume_at)
    if stop_lookup is not None:
        stop: int | None = stop_lookup
    else:
        stop = None if follow else end
    if stop is not None:
        start = min(start, stop)
    return PartitionPlan(partition, start, stop, end_at_open=end)


def in_range(ts_ms: int, from_ms: int, to_ms: int | None) -> bool:
    """`[from, to)`: half-open, so consecutive ranges never share a record."""
    return ts_ms >= from_ms and (to_ms is None or ts_ms < to_ms)


@dataclass
class Batch:
    """Records of one partition, in offset order, that lie in the range; `next_offset` is where the
    partition continues after this batch (past the out-of-range records that were dropped too)."""

    partition: int
    records: list[Any]
    next_offset: int
    outside: int = 0


@dataclass
class RangeStats:
    read: int = 0
    outside: int = 0
    partitions: int = 0
    empty_partitions: int = 0
    planned: int | None = 0


@dataclass
class RateLimit:
    """At most `per_second` records per second on average (None: unlimited)."""

    per_second: float | None
    started: float = field(default_factory=time.monotonic)
    taken: int = 0

    def delay_after(self, n: int, now: float) -> float:
        self.taken += n
        if not self.per_second:
            return 0.0
        return max(0.0, self.started + self.taken / self.per_second - now)


class RangeReader:
    """Reads `[from_ms, to_ms)` of one topic; see the module docstring for the rules."""

    def __init__(
        self,
        consumer_kwargs: dict[str, Any],
        topic: str,
        from_ms: int,
        to_ms: int | None,
        *,
        follow: bool = False,
        resume: dict[int, int] | None = None,
        max_rate: float | None = None,
        follow_grace_ms: int = 5_000,
        poll_ms: int = 500,
    ) -> None:
        self.consumer_kwargs = consumer_kwargs
        self.topic = topic
        self.from_ms = max(0, from_ms)  # before the epoch: from the beginning (Kafka refuses negatives)
        self.to_ms = to_ms if to_ms is None else max(0, to_ms)
        self.follow = follow
        self.resume = resume or {}
        self.rate = RateLimit(max_rate)
        self.follow_grace_ms = follow_grace_ms
        self.poll_ms = poll_ms
        self.plans: dict[int, PartitionPlan] = {}
        self.stats = RangeStats()
        self.last_ts: int | None = None
        self._consumer: Any = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Stop after the batch in hand (Ctrl-C): positions stay exact for a resume."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def positions(self) -> dict[int, int]:
        return {p: pl.position for p, pl in self.plans.items()}

    @property
    def done(self) -> bool:
        return all(pl.finished for pl in self.plans.values())

    async def open(self) -> dict[int, PartitionPlan]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(
            **self.consumer_kwargs,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",  # a range deleted by retention mid-read is an error, not a jump
            max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=16 << 20,
        )
        await c.start()
        self._consumer = c
        try:
            parts = await topic_partitions(self.consumer_kwargs, self.topic)
            tps = [TopicPartition(self.topic, p) for p in parts]
            ends = await c.end_offsets(tps)
            starts = await c.offsets_for_times({tp: self.from_ms for tp in tps})
            stops = await c.offsets_for_times({tp: self.to_ms for tp in tps}) if self.to_ms is not None else {}
            for tp in tps:
                s, e = starts.get(tp), stops.get(tp)
                self.plans[tp.partition] = plan_partition(
                    tp.partition,
                    ends[tp],
                    s.offset if s is not None else None,
                    e.offset if e is not None else None,
                    follow=self.follow,
                    resume_at=self.resume.get(tp.partition),
                )
            active = [tp for tp in tps if not self.plans[tp.partition].finished]
            c.assign(tps)
            for tp in tps:
                c.seek(tp, self.plans[tp.partition].position)
            c.pause(*[tp for tp in tps if tp not in active])
            planned = [pl.planned for pl in self.plans.values()]
            self.stats.partitions = len(tps)
            self.stats.empty_partitions = sum(pl.empty for pl in self.plans.values())
            self.stats.planned = None if None in planned else sum(
                max(0, pl.stop - pl.position) for pl in self.plans.values() if pl.stop is not None
            )
        except BaseException:
            await self.close()
            raise
        return self.plans

    async def close(self) -> None:
        if self._consumer is not None:
            c, self._consumer = self._consumer, None
            await c.stop()

    async def batches(self) -> AsyncIterator[Batch]:
        """Batches in the range until every partition reached its stop (or `stop()`). Leaving the loop
        early (break, exception) leaves the batch in hand unconsumed: a resume reads it again."""
        from aiokafka import TopicPartition

        c = self._consumer
        rate = self.rate.per_second
        per_fetch = 5000 if not rate else max(1, min(5000, int(rate / 4)))  # smooth: ~4 fetches a second
        while not self._stop.is_set() and not self.done:
            fetched = await c.getmany(timeout_ms=self.poll_ms, max_records=per_fetch)
            got = 0
            to_ms = self.to_ms if self.to_ms is not None else 1 << 62
            for tp, recs in fetched.items():
                pl = self.plans[tp.partition]
                keep: list[Any] = []
                outside = 0
                nxt = pl.position
                # following, records appended after the start count as "from now on" (see module doc)
                new_from = pl.end_at_open if self.follow and pl.end_at_open is not None else 1 << 62
                from_ms = self.from_ms
                for r in recs:  # the per-record loop: plain comparisons (same rules as `in_range`)
                    off, ts = r.offset, r.timestamp
                    if off < nxt:
                        continue  # already handled (a re-fetch after a reconnect)
                    if pl.stop is None and ts >= to_ms:
                        pl.stop = off  # following: the first record at or past `to` ends it
                    if pl.stop is not None and off >= pl.stop:
                        break
                    nxt = off + 1
                    if ts < to_ms and (ts >= from_ms or off >= new_from):
                        keep.append(r)
                    else:
                        outside += 1
                if pl.stop is not None and nxt >= pl.stop:
                    c.pause(tp)
                self.stats.read += len(keep)
                self.stats.outside += outside
                got += len(keep)
                if nxt > pl.position:
                    yield Batch(tp.partition, keep, nxt, outside)
                    # the caller asked for more, so it handled this batch: a resume starts after it
                    pl.position = nxt
                    if keep:
                        self.last_ts = max(self.last_ts or 0, keep[-1].timestamp)
                    if self._stop.is_set():
                        return
            # partitions whose last offsets are not records (transaction markers, compacted gaps)
            for p, pl in self.plans.items():
                if pl.stop is not None and not pl.finished:
                    tp = TopicPartition(self.topic, p)
                    pos = await c.position(tp)
                    if pos >= pl.stop:
                        pl.position = max(pl.position, pl.stop)
                        c.pause(tp)
                elif pl.stop is None and not fetched and self._follow_over(c, TopicPartition(self.topic, p), pl):
                    pl.stop = pl.position
            delay = self.rate.delay_after(got, time.monotonic())
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    def caught_up(self, partition: int, position: int) -> bool:
        """Following: nothing more to read in the partition right now (at its last known end)."""
        from aiokafka import TopicPartition

        hw = self._consumer.highwater(TopicPartition(self.topic, partition)) if self._consumer else None
        return hw is not None and position >= hw

    def _follow_over(self, c: Any, tp: Any, pl: PartitionPlan) -> bool:
        """Following with a `to` in the past: a caught-up partition is done once the clock passed it."""
        if self.to_ms is None:
            return False
        hw = c.highwater(tp)
        return hw is not None and pl.position >= hw and time.time() * 1000 > self.to_ms + self.follow_grace_ms
