"""The raw reader across a rebalance (real Kafka, two readers in this process, one group).

Records a reader fetched before its group changed must not be cut into a batch after the change: the
partitions' owners (the reader itself, or another) start them again from the committed offsets as they
stand after the change, and a batch cut from the old fetch overlaps theirs with other offsets, which
the aggregator's per-series marks cannot recognise as a replay (a 1 -> 3 -> 1 run doubled one window
of one service that way). Here the first reader's fetch is held until the group has changed, then
handed to it; afterwards every batch on the points topic covers a range of raw offsets that no other
batch overlaps unless it is the very same range, and together they cover every record once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from typing import Any

import orjson
import pytest
from logtide.schemas import Topics
from logtide.streams.batch import BATCH_TAG, BatchMapper
from logtide.streams.config import StreamsConfig
from logtide.streams.metrics import StreamsMetrics
from logtide.streams.pipeline import Stateless
from logtide.streams.raw_reader import RawReader

from tests.streams.kafka_util import committed_all, wait_for
from tests.streams.recount import log_record, streams_cfg, t_base

pytestmark = pytest.mark.integration

PER_PARTITION = 600


async def _setup(kafka: str, topics: Topics, points: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 2, 1) for t in (*topics.all(), points)])
    finally:
        await admin.close()


async def _produce(kafka: str, topic: str, first: int, n: int) -> None:
    """`n` log lines per service, service i to raw partition i (one event-time source each)."""
    from datetime import timedelta

    from aiokafka import AIOKafkaProducer

    t0 = t_base()
    p = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5)
    await p.start()
    try:
        futs = []
        for k in range(first, first + n):
            for part, svc in enumerate(("api", "web")):
                key, value = log_record(t0 + timedelta(milliseconds=200 * k), svc, k, k % 29 == 0)
                futs.append(await p.send(topic, value=value, key=key, partition=part))
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def _batches(kafka: str, points: str) -> dict[str, set[tuple[int, int]]]:
    """(lo, hi) of every batch on the points topic, per raw partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    out: dict[str, set[tuple[int, int]]] = defaultdict(set)
    try:
        tps = [TopicPartition(points, p) for p in range(2)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            for recs in (await c.getmany(timeout_ms=500)).values():
                for r in recs:
                    if r.value[:5] == BATCH_TAG:
                        d = orjson.loads(r.value)
                        out[d["src"]].add((d["lo"], d["hi"]))
    finally:
        await c.stop()
    return out


@pytest.mark.timeout(300)
async def test_records_fetched_before_a_rebalance_are_never_cut_after_it(kafka: str, unique: str) -> None:
    topics = Topics(f"r{unique}.")
    group, points = f"r{unique}-raw", f"r{unique}-points"
    cfg = StreamsConfig.model_validate(streams_cfg(f"r{unique}"))
    await _setup(kafka, topics, points)

    def reader() -> RawReader:
        return RawReader(BatchMapper(cfg, Stateless(cfg)), topics, points, group_id=group,
                         client_kwargs={"bootstrap_servers": kafka}, metrics=StreamsMetrics(), max_records=100,
                         poll_ms=50, session_timeout_ms=6000)

    a, b = reader(), reader()
    assignments = {a: 0, b: 0}  # completed assignments per reader

    def counting(r: RawReader) -> None:
        real_assigned = r.assigned

        async def assigned(tps: Any) -> None:
            await real_assigned(tps)
            assignments[r] += 1

        r.assigned = assigned  # type: ignore[method-assign]

    counting(a)
    counting(b)
    tasks: list[asyncio.Task[Any]] = []
    try:
        tasks.append(asyncio.create_task(a.run()))
        await wait_for(lambda: assignments[a] >= 1, "reader a assigned", 60)
        await _produce(kafka, topics.logs_raw, 0, PER_PARTITION // 2)
        await committed_all(kafka, group, topics.logs_raw, 120)

        # the next fetch of a is held until the group has changed (a revoked and assigned again)
        real, held, release = a.consumer.getmany, asyncio.Event(), asyncio.Event()
        before = assignments[a]

        async def getmany(*args: Any, **kw: Any) -> Any:
            data = await real(*args, **kw)
            if data and not held.is_set():
                held.set()
                await release.wait()
            return data

        a.consumer.getmany = getmany
        await _produce(kafka, topics.logs_raw, PER_PARTITION // 2, PER_PARTITION // 2)
        await wait_for(held.is_set, "reader a to fetch", 60)
        tasks.append(asyncio.create_task(b.run()))
        await wait_for(lambda: assignments[a] > before and assignments[b] >= 1
                       and len(a.consumer.assignment() | b.consumer.assignment()) == 4, "the group to change", 120)
        release.set()
        await committed_all(kafka, group, topics.logs_raw, 120)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    for src, ranges in (await _batches(kafka, points)).items():
        ordered = sorted(ranges)
        for (lo1, hi1), (lo2, hi2) in itertools.pairwise(ordered):
            assert hi1 < lo2, f"{src}: batches {lo1}..{hi1} and {lo2}..{hi2} overlap with other cuts"
        covered = [o for lo, hi in ordered for o in range(lo, hi + 1)]
        assert covered == list(range(PER_PARTITION)), f"{src}: raw offsets not covered exactly once"
