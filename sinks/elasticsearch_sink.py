"""Bulk-indexes event documents into Elasticsearch with at-least-once semantics.

`write` returns only when every document is either acknowledged or definitively rejected (a
mapping or parse error, which no retry fixes); those come back as rejections for the dead-letter
topic. Transient failures (connection, 429, 5xx) are retried with exponential backoff and jitter
for as long as it takes, so the caller holds its Kafka offsets: backpressure, not loss.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from logtide.sinks.elasticsearch_docs import bulk_action, index_template

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class WriteResult:
    indexed: int = 0
    retries: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (position in the batch, reason)


class ElasticsearchSink:
    def __init__(
        self,
        client: Any,
        prefix: str = "logtide",
        max_backoff_s: float = 30.0,
        give_up_after_s: float | None = None,
    ) -> None:
        """`client` is an `elasticsearch.AsyncElasticsearch`; `give_up_after_s=None` retries forever."""
        self.client = client
        self.prefix = prefix
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s

    async def ensure_template(self) -> None:
        body = index_template(self.prefix)
        await self.client.indices.put_index_template(name=f"{self.prefix}-events", **body)

    async def write(self, docs: Sequence[dict[str, Any]]) -> WriteResult:
        result = WriteResult()
        pending = list(range(len(docs)))
        delay, waited = 0.2, 0.0
        while pending:
            retry: list[int] = []
            try:
                resp = await self.client.bulk(
                    operations=self._operations([docs[i] for i in pending]), refresh=False
                )
            except Exception as exc:  # connection refused, timeout, 5xx on the whole request
                if not _is_retryable_exception(exc):
                    raise
                retry = pending
            else:
                for pos, item in zip(pending, resp["items"], strict=True):
                    outcome = next(iter(item.values()))
                    status = outcome.get("status", 500)
                    if status < 300:
                        result.indexed += 1
                    elif status in RETRYABLE_STATUS:
                        retry.append(pos)
                    else:
                        err = outcome.get("error") or {}
                        result.rejected.append(
                            (pos, f"{status} {err.get('type', '')}: {err.get('reason', '')}".strip())
                        )
            if not retry:
                break
            if self.give_up_after_s is not None and waited >= self.give_up_after_s:
                raise TimeoutError(
                    f"{len(retry)} documents still not accepted after {waited:.0f} s of retries"
                )
            result.retries += 1
            sleep = random.uniform(0, delay)  # full jitter
            await asyncio.sleep(sleep)
            waited += sleep
            delay = min(delay * 2, self.max_backoff_s)
            pending = retry
        return result

    def _operations(self, docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for doc in docs:
            action = bulk_action(doc, self.prefix)
            ops.append({"index": {"_index": action["_index"], "_id": action["_id"]}})
            ops.append(action["_source"])
        return ops


def _is_retryable_exception(exc: Exception) -> bool:
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout
    from elasticsearch import ApiError

    if isinstance(exc, TransportConnectionError | ConnectionTimeout):
        return True
    return isinstance(exc, ApiError) and exc.meta.status in RETRYABLE_STATUS
