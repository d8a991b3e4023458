"""Alert state in Kafka (adapter): the notification log and the silences live in compacted topics,
so a restarted or moved alert process reads them back and neither pages twice nor forgets a resolve.

Keys: `group_key/receiver` for the log, the silence id for silences; a null value is a tombstone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from logtide.sinks.alerts.nflog import NotificationLog
from logtide.sinks.alerts.silence import Silence, Silences

log = logging.getLogger(__name__)


async def ensure_topics(conn: dict[str, Any], plain: list[str], compacted: list[str], partitions: int = 1,
                        replication: int = 1, *, compacted_partitions: dict[str, int] | None = None,
                        ) -> dict[str, list[int]]:
    """Create the alert topics if missing (idempotent); the partitions of each, as the cluster says.
    Compacted topics get one partition unless `compacted_partitions` says more (the sharded
    notification log); an existing one with another count is an error (shards would move)."""
    cp = compacted_partitions or {}
    admin = AIOKafkaAdminClient(**conn)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, partitions, replication) for t in plain if t not in existing]
        new += [NewTopic(t, cp.get(t, 1), replication, topic_configs={"cleanup.policy": "compact"})
                for t in compacted if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        parts = await topic_partitions(admin, [*plain, *compacted])
        for t, n in cp.items():
            if len(parts.get(t, [])) != n:
                raise RuntimeError(f"topic {t} has {len(parts.get(t, []))} partitions but alerts.shards is {n}: "
                                   "the shards of the notification log would not line up (use a new topic prefix "
                                   "or the topic's partition count)")
        return parts
    finally:
        await admin.close()


async def topic_partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, list[int]]:
    """Partition numbers per topic (retried briefly: a topic created a moment ago may not list yet)."""
    out: dict[str, list[int]] = {}
    for _ in range(50):
        for d in await admin.describe_topics([t for t in topics if t not in out]):
            if d.get("error_code") == 0 and d.get("partitions"):
                out[d["topic"]] = sorted(p["partition"] for p in d["partitions"])
        if len(out) == len(set(topics)):
            return out
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topics without partitions: {sorted(set(topics) - set(out))}")


async def behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """True while some partition's position is short of the given end offsets."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def read_compacted(conn: dict[str, Any], topic: str, parts: list[int]) -> list[tuple[str, bytes | None]]:
    """Every (key, value) of a topic from the beginning to its current end, in order."""
    c = AIOKafkaConsumer(**conn, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    out: list[tuple[str, bytes | None]] = []
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return out
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        while await behind(c, ends):
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                out.extend((m.key.decode() if m.key else "", m.value) for m in msgs)
    finally:
        await c.stop()
    return out


def load_nflog(records: list[tuple[str, bytes | None]]) -> NotificationLog:
    nf = NotificationLog()
    for k, v in records:
        nf.load(k, None if v is None else orjson.loads(v))
    return nf


def load_silences(records: list[tuple[str, bytes | None]], silences: Silences | None = None) -> Silences:
    s = silences if silences is not None else Silences()
    for k, v in records:
        if v is None:
            s.by_id.pop(k, None)
            continue
        try:
            s.put(Silence.from_plain(orjson.loads(v)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed silence %s: %s", k, exc)
    return s
