"""Topics with records at chosen timestamps on chosen partitions, for the replay and tail tests."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence

import orjson

HOUR = 3_600_000
MINUTE = 60_000
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# Record = (partition, timestamp ms, key, value)
Record = tuple[int, int, bytes | None, bytes]


def spread_records() -> list[Record]:
    """Four partitions: 0 spans 0h-4h every 6 min; 1 spans 1h-2h (ends early); 2 is empty;
    3 spans 2h-5h every 10 min. Timestamps increase within each partition (as a shipper sends)."""
    out: list[Record] = []

    def add(p: int, ts: int, i: int) -> None:
        v = orjson.dumps({"@timestamp": f"ts-{ts}", "partition": p, "i": i, "ts": ts})
        out.append((p, ts, f"k{p}-{i}".encode(), v))

    for i in range(41):
        add(0, BASE + i * 6 * MINUTE, i)
    for i in range(21):
        add(1, BASE + HOUR + i * 3 * MINUTE, i)
    for i in range(19):
        add(3, BASE + 2 * HOUR + i * 10 * MINUTE, i)
    return out


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # no retention: the records carry old timestamps, which time-based retention would delete
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"retention.ms": "-1"})])
    finally:
        await admin.close()


async def produce_at(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    """Each record on its partition with its explicit timestamp (CreateTime), in the given order."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=True)
    await p.start()
    try:
        futs = [await p.send(topic, value=v, key=k, partition=part, timestamp_ms=ts) for part, ts, k, v in records]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


def kcat_range(bootstrap: str, topic: str, from_ms: int, to_ms: int) -> list[bytes]:
    """The trusted peer: kcat's own time-range read (`-o s@FROM -o e@TO`), values one per line."""
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", f"s@{from_ms}", "-o", f"e@{to_ms}", "-e", "-q",
         "-f", "%s\\n"],
        check=True, capture_output=True, timeout=120,
    ).stdout
    return [line for line in out.split(b"\n") if line]
