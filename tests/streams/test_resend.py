"""A shipper killed between Kafka's acknowledgement and its checkpoint sends the same lines again (same
ids, same partition): the windows count them once, the enriched topic still carries them (the sinks
write by id), and a worker that takes the partition over learns the recent ids by reading back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from logtide.streams.batch import BatchMapper
from logtide.streams.config import StreamsConfig
from logtide.streams.resend import RecentIds, record_id, split_lookback

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
CFG = StreamsConfig.model_validate({"window": {"size_seconds": 10, "group_by": ["service"]}})


class Rec:
    __slots__ = ("key", "offset", "value")

    def __init__(self, value: bytes, offset: int) -> None:
        self.key, self.value, self.offset = b"host/1:2", value, offset


def line(i: int) -> bytes:
    return orjson.dumps({"@timestamp": (T0 + timedelta(seconds=i)).isoformat(), "event": {"id": f"id-{i}"},
                         "logtide": {"schema": "log_event"}, "message": f"line {i}",
                         "service": {"name": "api"}, "log": {"offset": i * 10}})  # fmt: skip


def counted(mapper: BatchMapper, recs: list[Rec], partition: int = 0) -> tuple[int, int, int]:
    """(events in log.events panes, enriched records, resent) of one batch."""
    mb = mapper.logs(recs, "logs.raw", partition, T0 + timedelta(minutes=5))
    n = sum(agg.count for s in mb.series if s.metric == "log.events" for _p, _a, _b, agg, _e in s.panes)
    return n, len(mb.enriched), mb.resent


def test_recent_ids_remember_the_last_capacity_ids() -> None:
    r = RecentIds(capacity=3)
    assert [r.seen(x) for x in ("a", "b", "a", "c", "d")] == [False, False, True, False, False]
    assert len(r) == 3
    assert r.seen("a") is False  # the oldest, pushed out by d: a resend this late counts again
    assert r.seen("d") is True
    assert r.seen("b") is False  # pushed out by the second a


def test_a_resent_line_is_forwarded_but_counted_once() -> None:
    mapper = BatchMapper(CFG)
    first = [Rec(line(i), i) for i in range(10)]
    assert counted(mapper, first) == (10, 10, 0)
    # the shipper restarts from its checkpoint at line 6 and sends 6..12: 6..9 again
    again = [Rec(line(i), 10 + k) for k, i in enumerate(range(6, 13))]
    assert counted(mapper, again) == (3, 7, 4)


def test_ids_are_remembered_per_raw_partition() -> None:
    mapper = BatchMapper(CFG)
    assert counted(mapper, [Rec(line(1), 0)], partition=0) == (1, 1, 0)
    assert counted(mapper, [Rec(line(1), 0)], partition=1) == (1, 1, 0)


def test_a_worker_taking_the_partition_over_learns_what_was_just_before_it() -> None:
    old = [Rec(line(i), i) for i in range(10)]
    resend = [Rec(line(i), 10 + k) for k, i in enumerate(range(6, 13))]
    fresh = BatchMapper(CFG)
    back, rest = split_lookback([*old, *resend[:2]], until=10)  # read back from 10 - LOOKBACK
    assert [r.offset for r in back] == list(range(10)) and [r.offset for r in rest] == [10, 11]
    fresh.learn(back, "logs.raw", 0)
    assert counted(fresh, resend) == (3, 7, 4)
    fresh.forget("logs.raw", 0)  # revoked: a later owner learns again
    assert counted(fresh, [Rec(line(2), 30)]) == (1, 1, 0)


def test_record_id_reads_the_event_id_or_nothing() -> None:
    assert record_id(line(3)) == "id-3"
    assert record_id(b"\xff not json") is None
    assert record_id(b'{"event": {"id": 5}}') is None
    assert record_id(b"[1, 2]") is None
