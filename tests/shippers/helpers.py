"""Shared helpers of the shipper tests: real sample lines, config builders, a Kafka reader."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path
from typing import Any

import orjson
from logtide.schemas import LogEvent

DATASETS = Path(__file__).resolve().parents[1] / "data" / "logs"  # copied in with licences: tests/data/README.md
ACCESS = DATASETS / "access" / "apache_combined_2k.log"
LOGHUB = DATASETS / "loghub"


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def structured(name: str) -> list[dict[str, str]]:
    with open(LOGHUB / f"{name}_2k.log_structured.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def validate_event(raw: bytes) -> LogEvent:
    """Every shipped event must be a valid schemas.LogEvent."""
    return LogEvent.model_validate(orjson.loads(raw))


async def consume(
    bootstrap: str,
    topic: str,
    expected: int,
    *,
    timeout_s: float = 60.0,
    idle_s: float = 3.0,
    until: Any = None,
) -> list[dict[str, Any]]:
    """Read `topic` from the start until `expected` records arrived (then `idle_s` more for extras),
    or until `until(records)` is true."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        group_id=None, fetch_max_bytes=16 << 20, max_partition_fetch_bytes=8 << 20,
    )  # fmt: skip
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    reached_at: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
            got = False
            for tp, msgs in batch.items():
                for m in msgs:
                    ev = orjson.loads(m.value)
                    ev["_partition"] = tp.partition
                    ev["_key"] = m.key
                    out.append(ev)
                    got = True
            if until is not None:
                if until(out):
                    break
                continue
            if len(out) >= expected:
                if reached_at is None:
                    reached_at = time.monotonic()
                if not got and time.monotonic() - reached_at >= idle_s:
                    break
    finally:
        await consumer.stop()
    return out


async def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def wait_for(pred, timeout_s: float = 30.0, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return bool(pred())
