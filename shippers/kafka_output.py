"""The Kafka adapter: aiokafka's batch API, one partition per record key, acks awaited.

Records for one key always go to the partition murmur2(key) picks (as Kafka's Java client would),
appended to `BatchBuilder`s and submitted with `send_batch`; a per-partition lock keeps submission
order equal to call order. `send` returns when every batch is acknowledged (acks=all with the
idempotent producer), and raises otherwise; retries with backoff belong to the caller.
aiokafka's internals (codec levels) are touched only in `aiokafka_compat`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from logtide.shippers.aiokafka_compat import DEFAULT_LEVELS, append_records, murmur2, set_compression_levels
from logtide.shippers.output import Record

log = logging.getLogger(__name__)

# Errors after which the idempotent producer's sequence state is not trustworthy: start afresh.
_RESTART_ERRORS = ("OutOfOrderSequenceNumber", "UnknownProducerId", "InvalidProducerEpoch", "ProducerFenced",
                   "IllegalState", "ProducerClosed")  # fmt: skip


class RecordTooLarge(ValueError):
    pass


class KafkaOutput:
    """`Output` over an `AIOKafkaProducer` built from `producer_kwargs`."""

    def __init__(
        self, producer_kwargs: dict[str, Any], compression_levels: dict[str, int] | None = None
    ) -> None:
        self.kwargs = dict(producer_kwargs)
        set_compression_levels(DEFAULT_LEVELS if compression_levels is None else compression_levels)
        self.producer: AIOKafkaProducer | None = None
        self._locks: dict[tuple[str, int], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._partitions: dict[str, list[int]] = {}
        self._key_partition: dict[tuple[str, bytes | None], int] = {}
        self._restart_lock = asyncio.Lock()
        self._rr = 0

    async def start(self) -> None:
        producer = AIOKafkaProducer(**self.kwargs)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()

    async def _restart(self, reason: BaseException) -> None:
        async with self._restart_lock:
            log.warning("restarting the Kafka producer after %s", type(reason).__name__)
            old, self.producer = self.producer, None
            if old is not None:
                try:
                    await asyncio.wait_for(old.stop(), 10)
                except Exception as exc:
                    log.debug("old producer stop: %r", exc)
            self._partitions.clear()
            self._key_partition.clear()
            await self.start()

    async def _partition_list(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            found = await producer.partitions_for(topic)
            if not found:
                raise KafkaError(f"no partitions for topic {topic}")
            parts = self._partitions[topic] = sorted(found)
        return parts

    def _partition(self, topic: str, key: bytes | None, parts: list[int]) -> int:
        cached = self._key_partition.get((topic, key))
        if cached is None:
            if key is None:
                self._rr += 1
                return parts[self._rr % len(parts)]
            cached = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
            self._key_partition[(topic, key)] = cached
        return cached

    async def send(self, topic: str, records: Sequence[Record]) -> None:
        if not records:
            return
        producer = self.producer
        if producer is None:
            async with self._restart_lock:
                if self.producer is None:
                    await self.start()
            producer = self.producer
            assert producer is not None
        try:
            parts = await self._partition_list(producer, topic)
            groups: dict[int, list[Record]] = {}
            first_key = records[0][0]
            if all(r[0] == first_key for r in records) and first_key is not None:
                groups[self._partition(topic, first_key, parts)] = list(records)
            else:
                for rec in records:
                    groups.setdefault(self._partition(topic, rec[0], parts), []).append(rec)
            futures = []
            for partition, recs in groups.items():
                async with self._locks[(topic, partition)]:
                    done = 0
                    while done < len(recs):
                        batch = producer.create_batch()
                        upto = append_records(batch, recs, done)
                        if upto == done:
                            raise RecordTooLarge(f"record of {len(recs[done][1])} bytes does not fit a batch")
                        done = upto
                        # Closed: our caller already batched (one read chunk), so no linger on top of it.
                        batch.close()
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
            results = await asyncio.gather(*futures, return_exceptions=True)
        except RecordTooLarge:
            raise
        except Exception as exc:
            if type(exc).__name__ in _RESTART_ERRORS:
                await self._restart(exc)
            raise
        for res in results:
            if isinstance(res, BaseException):
                if type(res).__name__ in _RESTART_ERRORS:
                    await self._restart(res)
                raise res
