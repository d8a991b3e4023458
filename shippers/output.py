"""Where encoded events go: the `Output` protocol, and an in-memory output.

The harvesters and checkpointing only need "send these records and tell me when they are durably
accepted". Kafka is one implementation (`shippers.kafka_output`); the embedded runner (`logtide run`)
can feed an in-process queue with `QueueOutput` and the same at-least-once bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

Record = tuple[bytes | None, bytes]  # (key, encoded event); the key keeps one file's events in order


@runtime_checkable
class Output(Protocol):
    """A destination with acknowledgements.

    `send` returns only once every record is durably accepted (for Kafka: acks=all), and raises
    if that cannot be confirmed; the caller retries with backoff and re-sends the same records
    (at-least-once). Calls may overlap; calls for the same key made in order must be stored in order.
    """

    async def start(self) -> None: ...

    async def send(self, topic: str, records: Sequence[Record]) -> None: ...

    async def stop(self) -> None: ...


class QueueOutput:
    """Records go into a bounded asyncio queue as (topic, key, value); `send` waits when it is full.

    "Durably accepted" here means "in the queue"; the consumer of the queue owns them from then on.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes | None, bytes]] = asyncio.Queue(maxsize)

    async def start(self) -> None:
        return None

    async def send(self, topic: str, records: Sequence[Record]) -> None:
        for key, value in records:
            await self.queue.put((topic, key, value))

    async def stop(self) -> None:
        return None


class ListOutput:
    """Keeps everything in a list: for tests of the shipper core without a broker."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []
        self.fail_next = 0

    async def start(self) -> None:
        return None

    async def send(self, topic: str, records: Sequence[Record]) -> None:
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("injected failure")
        self.records.extend((topic, k, v) for k, v in records)

    async def stop(self) -> None:
        return None
