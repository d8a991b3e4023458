"""Consumes logtide topics and writes them to the configured targets.

At-least-once: a batch's offsets are committed only after every target acknowledged it (or the
record was dead-lettered with its reason). While a target is down the writes retry and nothing
is committed or read further: backpressure, with Kafka as the buffer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from logtide.schemas import DeadLetterSource, DecodeError, dead_letter, encode, parse_json
from logtide.sinks.metrics import SinkMetrics
from logtide.sinks.retry import TargetUnavailable

log = logging.getLogger("logtide.sinks")

# A target: writes a batch, returns (position, reason) for each document it rejected for good.
Writer = Callable[[Sequence[dict[str, Any]]], Awaitable[list[tuple[int, str]]]]


@dataclass
class SinkCounters:
    records: int = 0
    written: int = 0
    dead_letters: int = 0
    batches: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class KafkaSinkRunner:
    def __init__(
        self,
        *,
        consumer_kwargs: dict[str, Any],
        producer_kwargs: dict[str, Any],
        topics: list[str],
        deadletter_topic: str,
        writers: list[Writer],
        batch_max_records: int = 2000,
        batch_wait_ms: int = 500,
        metrics: SinkMetrics | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        """`stopping` is shared with the writers' retry policies: a stop ends their waits too."""
        self.consumer_kwargs = consumer_kwargs
        self.producer_kwargs = producer_kwargs
        self.topics = topics
        self.deadletter_topic = deadletter_topic
        self.writers = writers
        self.batch_max_records = batch_max_records
        self.batch_wait_ms = batch_wait_ms
        self.counters = SinkCounters()
        self.metrics = metrics or SinkMetrics()
        self._stop = stopping or asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, once: bool = False) -> SinkCounters:
        """Consume until stopped; with `once`, until the end offsets seen at start are reached."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        consumer = AIOKafkaConsumer(
            *self.topics, enable_auto_commit=False, auto_offset_reset="earliest", **self.consumer_kwargs
        )
        producer = AIOKafkaProducer(**self.producer_kwargs)
        await consumer.start()
        await producer.start()
        try:
            targets: dict[Any, int] | None = None
            while not self._stop.is_set():
                batch = await consumer.getmany(
                    timeout_ms=self.batch_wait_ms, max_records=self.batch_max_records
                )
                records = [r for rs in batch.values() for r in rs]
                if once and targets is None and consumer.assignment():
                    # The end as it was when we joined: what this run itself dead-letters is not included.
                    targets = await consumer.end_offsets(list(consumer.assignment()))
                if records:
                    try:
                        await self._handle(records, producer)
                    except TargetUnavailable as exc:
                        if not self._stop.is_set():
                            raise
                        log.warning("stopped while waiting for a target (%s): batch not committed", exc)
                        break
                    await consumer.commit()
                    self.metrics.committed.inc()
                if once and await self._reached(consumer, targets):
                    break
        finally:
            await producer.stop()
            await consumer.stop()
        return self.counters

    @staticmethod
    async def _reached(consumer: Any, targets: dict[Any, int] | None) -> bool:
        """True once every partition's position reached the end offset captured at the start."""
        if targets is None:
            return False
        for tp, end in targets.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _handle(self, records: list[Any], producer: Any) -> None:
        docs: list[dict[str, Any]] = []
        sources: list[DeadLetterSource] = []
        dead = []
        for rec in records:
            self.counters.records += 1
            src = DeadLetterSource(stage="sink", topic=rec.topic, partition=rec.partition, offset=rec.offset)
            try:
                doc = parse_json(rec.value)
                if not isinstance(doc, dict) or not (doc.get("event") or {}).get("id"):
                    raise DecodeError("validation", "not a logtide event (no event.id)", "event.id")
            except DecodeError as err:
                dead.append(dead_letter(rec.value, err, src))
                continue
            docs.append(doc)
            sources.append(src)
        rejected: dict[int, str] = {}
        # The targets write side by side; the batch is done when the slower one took it.
        for result in await asyncio.gather(*(writer(docs) for writer in self.writers)):
            for pos, reason in result:
                rejected.setdefault(pos, reason)
        for pos, reason in sorted(rejected.items()):
            doc = docs[pos]
            if (doc.get("logtide") or {}).get("schema") == "dead_letter":
                # Never loop a dead letter back into its own topic; it stays in Kafka and is counted.
                log.error("dead letter %s rejected by a target: %s", doc["event"]["id"], reason)
                self._count("deadletter_rejected")
                continue
            dead.append(dead_letter(orjson.dumps(doc), DecodeError("target_rejected", reason), sources[pos]))
        for letter in dead:
            self._count(letter.error.type)
            await producer.send_and_wait(self.deadletter_topic, encode(letter), key=letter.id.encode())
        self.counters.written += len(docs) - len(rejected)
        self.counters.dead_letters += len(dead)
        self.counters.batches += 1

    def _count(self, reason: str) -> None:
        self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + 1
        self.metrics.dead_letters.labels(reason).inc()
