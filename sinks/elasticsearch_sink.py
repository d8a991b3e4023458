"""Bulk-indexes event documents into Elasticsearch with at-least-once semantics.

`write` returns only when every document is either acknowledged or definitively rejected (a
mapping conflict or another per-document error no retry fixes: returned with Elasticsearch's
reason, for the dead-letter topic). Items answered 429/503 (and whole requests that fail for a
passing reason: no connection, timeouts, 5xx) are retried with backoff through `RetryPolicy`,
logged and counted every time, so the caller holds its Kafka offsets: backpressure, not loss.
Requests are bounded in bytes and in number in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from logtide.sinks.elasticsearch_docs import (
    ClusterFeatures,
    bulk_lines,
    cluster_features,
    component_templates,
    ilm_policy,
    ilm_policy_name,
    index_templates,
)
from logtide.sinks.metrics import SinkMetrics
from logtide.sinks.retry import RetryPolicy, TargetUnavailable

log = logging.getLogger("logtide.sinks")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class WriteResult:
    indexed: int = 0
    retries: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (position in the batch, reason)


def chunk_by_bytes(sizes: Sequence[int], max_bytes: int) -> list[list[int]]:
    """Consecutive positions grouped so each group's sizes add up to at most `max_bytes`
    (a single larger item goes alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for pos, size in enumerate(sizes):
        if current and total + size > max_bytes:
            chunks.append(current)
            current, total = [], 0
        current.append(pos)
        total += size
    if current:
        chunks.append(current)
    return chunks


class ElasticsearchSink:
    def __init__(
        self,
        client: Any,
        prefix: str = "logtide",
        *,
        retry: RetryPolicy | None = None,
        max_batch_bytes: int = 5 * 1024 * 1024,
        max_concurrency: int = 2,
        replicas: str | int = "auto",
        retention_days: int = 30,
    ) -> None:
        """`client` is an `elasticsearch.AsyncElasticsearch`."""
        self.client = client
        self.prefix = prefix
        self.retry = retry or RetryPolicy("elasticsearch", SinkMetrics())
        self.max_batch_bytes = max_batch_bytes
        self.replicas = replicas
        self.retention_days = retention_days
        self.features = ClusterFeatures()
        self._slots = asyncio.Semaphore(max_concurrency)

    async def ensure_templates(self) -> ClusterFeatures:
        """Put the ILM policy (if the cluster has ILM), component and per-kind index templates.

        Data streams and ILM are used when every node has their modules; otherwise (the local
        integ-test-zip cluster) daily indices named by kind and day are the fallback.
        """
        self.features = cluster_features((await self.client.nodes.info(metric="plugins")).body)
        if self.features.ilm:
            await self.client.ilm.put_lifecycle(
                name=ilm_policy_name(self.prefix), policy=ilm_policy(self.retention_days)
            )
        for name, body in component_templates(self.prefix, self.replicas, self.features).items():
            await self.client.cluster.put_component_template(name=name, **body)
        for name, body in index_templates(self.prefix, self.features).items():
            await self.client.indices.put_index_template(name=name, **body)
        log.info(
            "elasticsearch templates ready (ilm=%s, data streams=%s)", self.features.ilm, self.features.data_streams
        )
        return self.features

    async def write(self, docs: Sequence[dict[str, Any]]) -> WriteResult:
        result = WriteResult()
        lines = [bulk_lines(d, self.prefix, self.features.data_streams) for d in docs]
        chunks = chunk_by_bytes([len(x) for x in lines], self.max_batch_bytes)
        await asyncio.gather(*(self._write_chunk(chunk, lines, result) for chunk in chunks))
        result.rejected.sort()
        return result

    async def _write_chunk(self, positions: list[int], lines: list[bytes], result: WriteResult) -> None:
        pending = positions

        async def attempt() -> None:
            nonlocal pending
            async with self._slots:
                pending = await self._bulk_once(pending, lines, result)
            if pending:
                result.retries += 1
                raise TargetUnavailable(f"{len(pending)} documents answered 429/503 (cluster busy)")

        await self.retry.call(attempt)

    async def _bulk_once(self, positions: list[int], lines: list[bytes], result: WriteResult) -> list[int]:
        """Send once; return the positions to send again."""
        try:
            resp = await self.client.bulk(operations=b"".join(lines[p] for p in positions), refresh=False)
        except Exception as exc:
            if _is_retryable_exception(exc):
                result.retries += 1
                raise TargetUnavailable(f"bulk request failed: {type(exc).__name__}: {exc}"[:300]) from exc
            raise
        retry: list[int] = []
        for pos, item in zip(positions, resp["items"], strict=True):
            outcome = next(iter(item.values()))
            status = outcome.get("status", 500)
            if status < 300 or (status == 409 and self.features.data_streams):  # 409: already there
                result.indexed += 1
            elif status in RETRYABLE_STATUS:
                retry.append(pos)
            else:
                err = outcome.get("error") or {}
                reason = f"{status} {err.get('type', '')}: {err.get('reason', '')}".strip()
                caused = (err.get("caused_by") or {}).get("reason")
                result.rejected.append((pos, f"{reason} ({caused})" if caused else reason))
        return retry


def _is_retryable_exception(exc: Exception) -> bool:
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout
    from elasticsearch import ApiError

    if isinstance(exc, TransportConnectionError | ConnectionTimeout | asyncio.TimeoutError):
        return True
    return isinstance(exc, ApiError) and exc.meta.status in RETRYABLE_STATUS
