"""The Python subscriber API: `from logtide import subscribe`.

    async for anomaly in subscribe("127.0.0.1:9092", since="1h", service="checkout"):
        ...  # a validated `logtide.schemas.Anomaly`

An async iterator of typed, validated anomalies from the anomalies topic, with the same filters as
`logtide anomalies tail` and a start time. It uses no consumer group and commits nothing: each
subscriber reads on its own, and where it starts is its own choice (`since`, `start`). Records that
are not valid anomalies are skipped, logged and counted (`Subscription.skipped`), never raised.
Other languages read the same topic with the JSON Schema in `schemas/json/anomaly.schema.json`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson

from logtide.anomaly_filter import AnomalyFilter
from logtide.schemas import Anomaly, DeadLetter, Topics, decode
from logtide.timespec import parse_duration_ms, parse_time_ms
from logtide.topic_range import UnknownTopic

__all__ = ["Subscription", "UnknownTopic", "subscribe"]

log = logging.getLogger("logtide.subscribe")


def start_ms(since: str | timedelta | None, start: datetime | int | str | None, now_ms: int) -> int:
    """Where reading starts: `since` ago, or at `start` (aware datetime, epoch ms or a time string);
    neither: now (only anomalies from here on)."""
    if since is not None and start is not None:
        raise ValueError("give since or start, not both")
    if since is not None:
        ms = since.total_seconds() * 1000 if isinstance(since, timedelta) else parse_duration_ms(since.lstrip("-"))
        return now_ms - round(ms)
    if start is None:
        return now_ms
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise ValueError("start needs a time zone (an aware datetime)")
        return round(start.timestamp() * 1000)
    if isinstance(start, int):
        return start
    return parse_time_ms(start, now_ms)


class Subscription:
    """Async iterator (and async context manager) of `Anomaly` objects; see the module docstring."""

    def __init__(
        self,
        client_kwargs: dict[str, Any],
        topic: str,
        from_ms: int,
        *,
        follow: bool,
        filt: AnomalyFilter,
    ) -> None:
        from logtide.topic_range import RangeReader

        self.topic = topic
        self.filter = filt
        self.skipped = 0
        self._reader = RangeReader(client_kwargs, topic, from_ms, None, follow=follow)
        self._gen: AsyncIterator[Anomaly] | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Anomaly:
        if self._gen is None:
            self._gen = self._anomalies()
        try:
            return await self._gen.__anext__()
        except StopAsyncIteration:
            await self.close()
            raise

    async def _anomalies(self) -> AsyncIterator[Anomaly]:
        await self._reader.open()
        async for batch in self._reader.batches():
            for r in batch.records:
                try:
                    doc = orjson.loads(r.value) if r.value else None
                except orjson.JSONDecodeError:
                    doc = None
                if doc is None:
                    self._skip(batch.partition, r.offset, "not JSON")
                    continue
                if not self.filter.matches(doc):
                    continue
                a = decode(r.value, Anomaly)
                if isinstance(a, DeadLetter):
                    self._skip(batch.partition, r.offset, a.error.message)
                    continue
                yield a

    def _skip(self, partition: int, offset: int, why: str) -> None:
        self.skipped += 1
        log.warning("%s[%d]@%d is not a valid anomaly, skipped: %s", self.topic, partition, offset, why)

    async def close(self) -> None:
        """Stop reading and close the connection (also done at the end of the iteration)."""
        if self._gen is not None:
            gen, self._gen = self._gen, None
            await gen.aclose()  # type: ignore[attr-defined]
        await self._reader.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def subscribe(
    bootstrap: str = "127.0.0.1:9092",
    *,
    since: str | timedelta | None = None,
    start: datetime | int | str | None = None,
    service: str | Iterable[str] | None = None,
    severity: str | None = None,
    status: str | None = None,
    follow: bool = True,
    prefix: str = "logtide.",
    topic: str | None = None,
    kafka: dict[str, Any] | None = None,
) -> Subscription:
    """Anomalies from `{prefix}anomalies` (or `topic`) as validated `Anomaly` objects.

    since/start: where to begin (`"1h"`, a `timedelta`, an aware `datetime`, epoch ms, ISO 8601);
    default now. service: one name or several; severity: this one and above (info < warning <
    critical); status: firing or resolved. follow=False ends at the topic's current end. kafka: extra
    aiokafka client settings (TLS, SASL), e.g. from `logtide.kafka_client.connection_kwargs`.
    A missing topic raises `UnknownTopic` (a `LookupError`) at the first iteration; it is never created.
    """
    filt = AnomalyFilter.of(service, severity, status)
    from_ms = start_ms(since, start, int(time.time() * 1000))
    client = {"bootstrap_servers": bootstrap, **(kafka or {})}
    return Subscription(client, topic or Topics(prefix).anomalies, from_ms, follow=follow, filt=filt)
