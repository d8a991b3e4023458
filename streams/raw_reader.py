"""Reads the raw topics in batches and runs the batch path on them (the Kafka adapter of `streams.batch`).

One aiokafka consumer (group `{app_id}-raw`, manual commits) and one idempotent producer, inside the
streams worker. Per cycle: fetch (`getmany`), cut one batch per raw partition and map it (while the
previous batch's outputs are still being acknowledged), then

1. wait for every acknowledgement of the previous batch's outputs,
2. commit, per partition, the new batch's *first* offset with its last offset in the commit metadata
   (the intent; for a partition with no new batch, the offset after the previous one),
3. produce the new batch's outputs (enriched events, dead letters, one message per series to the
   points topic) without waiting: step 1 of the next cycle waits for them.

So one commit per batch, and at most one produced-but-unacknowledged batch. A worker killed after 2
leaves the intent behind; whoever reads the partition next (the same
worker restarted or another after a rebalance) cuts its first batch at exactly that offset, so the
replayed batch gives the same per-series messages with the same offset range, and the aggregator skips
them (`BatchFolder`). Raw offsets are therefore never committed before their outputs are acknowledged,
and a replay is never counted twice. Around a rebalance nothing is cut from records fetched before
it: the partitions' new owners read the committed offsets as they stand when the group settles, and
a batch this reader announced after that would be cut differently by them (see `run`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata
from logtide.schemas import DeadLetter, Topics, encode
from logtide.streams.batch import BatchMapper, MappedBatch
from logtide.streams.metrics import StreamsMetrics
from logtide.streams.pipeline import Mark
from logtide.streams.resend import LOOKBACK, split_lookback
from logtide.streams.windowing import NO_TIME

log = logging.getLogger("logtide.streams.raw")

INTENT = "logtide:hi="


def parse_intent(metadata: str | None) -> int | None:
    """The last offset of the batch a commit announced (None when the commit is a plain one)."""
    if metadata and metadata.startswith(INTENT):
        try:
            return int(metadata[len(INTENT):])
        except ValueError:
            return None
    return None


def read_to_end(position: int | None, highwater: int | None, polled_ms: int | None) -> int | None:
    """When (wall clock, ms) a partition was last known read to its end: the time of the last fetch
    that answered its high watermark, if the reader's position has reached it; None otherwise (records
    still to read, or nothing fetched yet). A broker that does not answer leaves the time where it was,
    so a source never looks idle for lack of a reader."""
    if position is None or highwater is None or polled_ms is None or position < highwater:
        return None
    return polled_ms


def cut(buffer: list[Any], intent: int | None, limit: int) -> tuple[list[Any], list[Any]] | None:
    """Split a partition's buffered records into (batch, rest); None while an announced batch is
    incomplete. With an intent the batch is exactly the records up to it; otherwise at most `limit`."""
    if not buffer:
        return None
    if intent is not None:
        if buffer[-1].offset < intent:
            return None
        n = next((i for i, r in enumerate(buffer) if r.offset > intent), len(buffer))
        return buffer[:n], buffer[n:]
    return buffer[:limit], buffer[limit:]


class RawReader:
    """The batch loop over logs.raw and metrics.raw; `run` until cancelled."""

    def __init__(
        self,
        mapper: BatchMapper,
        topics: Topics,
        points_topic: str,
        *,
        group_id: str,
        client_kwargs: dict[str, Any],
        metrics: StreamsMetrics,
        max_records: int = 5000,
        poll_ms: int = 100,
        session_timeout_ms: int = 30_000,
        linger_ms: int = 5,
        compression: str | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        legacy_group: str | None = None,
    ) -> None:
        self.mapper, self.topics, self.points = mapper, topics, points_topic
        self.group_id, self.kw, self.metrics = group_id, client_kwargs, metrics
        self.max_records, self.poll_ms = max_records, poll_ms
        self.session_timeout_ms, self.linger_ms, self.compression = session_timeout_ms, linger_ms, compression
        self.on_error = on_error
        self.legacy_group = legacy_group  # read the raw topics before this reader existed (the Faust group)
        self.lock = asyncio.Lock()
        self.buffers: dict[TopicPartition, list[Any]] = {}
        self.intents: dict[TopicPartition, int] = {}
        # the produced batch whose acknowledgements are still awaited: (ack futures, next offset per partition)
        self.inflight: tuple[list[Any], dict[TopicPartition, int]] | None = None
        self.progress_interval_s = 1.0  # how often the window stage hears which partitions are read to their end
        self._progress_at = 0.0
        self._unsent: set[TopicPartition] = set()  # a batch of these was dropped unsent: never say "read"
        self.lookback: dict[TopicPartition, int] = {}  # read back up to this offset only to learn record ids
        # Bumped when partitions are revoked and when an assignment is complete: records fetched in an
        # older epoch are dropped unprocessed (`run`), and nothing is cut between a revocation and the
        # next assignment (`rebalancing`); the assignment seeks every partition, so they are read again.
        self.epoch = 0
        self.rebalancing = False  # partitions revoked, the next assignment not complete yet
        self.starts: dict[TopicPartition, int] = {}  # where the latest assignment started each partition
        self._partition_memo: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        self._rr = 0  # round robin for records without a key
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.admin: AIOKafkaAdminClient | None = None

    async def run(self) -> None:
        try:
            await self._start()
            while True:
                t_cycle = time.monotonic()
                epoch = self.epoch
                data = await self.consumer.getmany(timeout_ms=self.poll_ms, max_records=self.max_records)
                n = sum(len(v) for v in data.values())
                async with self.lock:
                    if epoch != self.epoch or self.rebalancing:
                        # Fetched across a change of the group: a partition revoked meanwhile may be
                        # another reader's already, which read the committed offset before this batch's
                        # intent would be committed, and cuts differently (double counts). Set aside:
                        # the assignment (done, or to come) places every partition again.
                        if not self.rebalancing:
                            self._seek_starts()
                        if n:
                            log.info("%d record(s) fetched across a rebalance set aside (read again)", n)
                        continue
                    assigned = self.consumer.assignment()
                    for tp, fetched in data.items():
                        if tp in assigned and fetched:
                            recs = self._past_lookback(tp, fetched)
                            if recs:
                                self.buffers.setdefault(tp, []).extend(recs)
                    batches = self._cut()
                    if batches:
                        await self._process(batches)
                    elif self.inflight is not None:
                        await self._finish()
                    await self._report_progress()
                if 0 < n < self.max_records:
                    # a trickle: let records gather for up to poll_ms per cycle, so that a batch still
                    # combines many events per series (the aggregator's load is per message, not per event)
                    await asyncio.sleep(max(0.0, t_cycle + self.poll_ms / 1000 - time.monotonic()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("raw reader failed")
            if self.on_error is not None:
                await self.on_error(exc)
            raise
        finally:
            try:  # a graceful stop commits the batch in flight (a kill leaves its intent instead)
                if self.inflight is not None and self.consumer is not None:
                    await asyncio.wait_for(self._finish(), 10)
            except BaseException as exc:
                log.debug("batch in flight at stop not committed: %s", exc)
            await self._stop()

    async def _start(self) -> None:
        kw = self.kw
        self.admin = AIOKafkaAdminClient(**kw)
        await self.admin.start()
        self.producer = AIOKafkaProducer(
            **kw, acks="all", enable_idempotence=True, linger_ms=self.linger_ms, max_batch_size=1 << 20,
            compression_type=self.compression, max_request_size=8 << 20,
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **kw, group_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.session_timeout_ms // 4),
            max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20, isolation_level="read_committed",
        )
        self.consumer.subscribe([self.topics.logs_raw, self.topics.metrics_raw], listener=_Listener(self))
        await self.consumer.start()

    async def _stop(self) -> None:
        for client in (self.consumer, self.producer, self.admin):
            if client is not None:
                try:
                    await (client.close() if client is self.admin else client.stop())
                except Exception as exc:  # stopping is best effort; the broker notices a dead member anyway
                    log.debug("stop: %s", exc)

    # --- rebalance ------------------------------------------------------------------------------
    async def revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:  # let the batch in flight finish (and commit) first
            self.epoch += 1
            self.rebalancing = True
            try:
                await self._finish()
            except Exception as exc:  # its partitions moved already: the new owner replays the announced batch
                log.warning("batch in flight at revocation not committed: %s", exc)
                self.inflight = None
            for tp in revoked:
                self.buffers.pop(tp, None)
                self.intents.pop(tp, None)
                self.lookback.pop(tp, None)
                self.mapper.forget(tp.topic, tp.partition)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        from logtide.streams.faust_app import describe_assignment

        log.info("assigned (raw group %s): %s", self.group_id, describe_assignment(assigned))
        async with self.lock:
            self._unsent -= assigned  # read again from the committed offset
            self.starts = {}
            if assigned:
                await self._seek_assigned(assigned)
            # records fetched until now (before these seeks) are set aside by `run`
            self.epoch += 1
            self.rebalancing = False

    async def _seek_assigned(self, assigned: set[TopicPartition]) -> None:
        """Every assigned partition explicitly to where this reader starts it (so that whatever was
        fetched before is fetched again): a little before the committed offset (the look-back for
        resent ids), where the legacy group stopped, or the beginning."""
        offs = await self.admin.list_consumer_group_offsets(self.group_id, partitions=list(assigned))
        fresh = [tp for tp in assigned if tp not in offs or offs[tp].offset < 0]
        legacy = await self._resume_from_legacy(fresh) if fresh and self.legacy_group else {}
        for tp in assigned:
            om = offs.get(tp)
            self.mapper.forget(tp.topic, tp.partition)
            if om is not None and om.offset > 0:
                # read back what was just before (only its ids): a shipper's resend of it is not new
                self.lookback[tp] = om.offset
                self.starts[tp] = max(0, om.offset - LOOKBACK)
            else:  # 0 below the log start: auto_offset_reset (earliest) applies
                self.starts[tp] = legacy.get(tp, 0)
            hi = parse_intent(om.metadata if om is not None else None)
            if hi is not None:
                self.intents[tp] = hi
                log.info("%s:%d resumes an announced batch %d..%d", tp.topic, tp.partition, om.offset, hi)
        self._seek_starts()

    def _seek_starts(self) -> None:
        """Every assigned partition to where the assignment starts it (nothing of it processed since)."""
        assigned = self.consumer.assignment()
        for tp, offset in self.starts.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)

    async def _resume_from_legacy(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """A partition this group never committed starts where the group that read the raw topics
        before the batch reader (the Faust group) stopped, not from the beginning (an upgrade must
        not replay the whole topic). Returns their start offsets."""
        old = await self.admin.list_consumer_group_offsets(self.legacy_group, partitions=tps)
        placed = {}
        for tp in tps:
            om = old.get(tp)
            if om is not None and om.offset >= 0:
                placed[tp] = om.offset
                log.info("%s:%d starts at %d, where group %s stopped", tp.topic, tp.partition, om.offset,
                         self.legacy_group)
        return placed

    def _past_lookback(self, tp: TopicPartition, recs: list[Any]) -> list[Any]:
        """The records to process; those read back before the committed offset only teach the mapper
        their ids."""
        until = self.lookback.get(tp)
        if until is None:
            return recs
        old, recs = split_lookback(recs, until)
        self.mapper.learn(old, tp.topic, tp.partition)
        if recs:
            del self.lookback[tp]
        return recs

    # --- one cycle ------------------------------------------------------------------------------
    def _cut(self) -> dict[TopicPartition, list[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        for tp, buf in self.buffers.items():
            r = cut(buf, self.intents.get(tp), self.max_records)
            if r is not None:
                out[tp], self.buffers[tp] = r
                self.intents.pop(tp, None)
        return out

    async def _finish(self) -> None:
        """Wait for the batch in flight and commit the offsets after it."""
        if self.inflight is None:
            return
        futs, ends = self.inflight
        await asyncio.gather(*futs)
        self.inflight = None
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in ends.items()})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.warning("commit after a produced batch failed (its replay will be skipped): %s", exc)

    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        m = self.metrics
        mapped: dict[TopicPartition, MappedBatch] = {}
        for tp, recs in batches.items():  # CPU work, while the previous batch's acks are on their way
            fn = self.mapper.logs if tp.topic == self.topics.logs_raw else self.mapper.metrics
            mapped[tp] = fn(recs, tp.topic, tp.partition, now)
        commit: dict[TopicPartition, OffsetAndMetadata] = {}
        if self.inflight is not None:
            futs, ends = self.inflight
            await asyncio.gather(*futs)
            self.inflight = None
            commit.update({tp: OffsetAndMetadata(o, "") for tp, o in ends.items()})
        # the intent: the batch's first offset (the previous batch done) and its last offset
        commit.update({tp: OffsetAndMetadata(recs[0].offset, f"{INTENT}{recs[-1].offset}")
                       for tp, recs in batches.items()})
        try:
            await self.consumer.commit(commit)
        except (CommitFailedError, IllegalStateError) as exc:  # the partitions moved: the new owner reads them
            log.warning("batch dropped before producing, partitions moved: %s", exc)
            self._unsent |= set(batches)
            return
        enriched, dead_topic, points = self.topics.logs_enriched, self.topics.deadletter, self.points
        part_enriched = await self._partitioner(enriched)
        part_points = await self._partitioner(points)
        part_dead = await self._partitioner(dead_topic)
        n_enriched = n_dead = n_points = 0
        out_enriched: list[tuple[bytes | None, bytes]] = []
        out_dead: list[tuple[bytes | None, bytes]] = []
        out_points: list[tuple[bytes | None, bytes]] = []
        for tp, mb in mapped.items():
            out_enriched += mb.enriched
            n_enriched += len(mb.enriched)
            for dl in mb.dead:
                out_dead.append((dl.event.id.encode(), encode(dl)))
                self._count_dead(dl)
            n_dead += len(mb.dead)
            out_points += [(sb.key.encode(), sb.to_bytes()) for sb in mb.series]
            n_points += len(mb.series)
            for direction, n in mb.skew.items():
                m.clock_skew.labels(direction).inc(n)
            if mb.untimed:
                m.untimed.labels(tp.topic).inc(mb.untimed)
            if mb.resent:
                m.resent.labels(tp.topic).inc(mb.resent)
            m.events_in.labels(tp.topic).inc(len(batches[tp]))
        futs = await self._produce(enriched, self._by_partition(out_enriched, part_enriched))
        futs += await self._produce(dead_topic, self._by_partition(out_dead, part_dead))
        futs += await self._produce(points, self._by_partition(out_points, part_points))
        # then the watermarks the batch's sources reached, to every points partition: after the points
        # they cover (one producer, batches of one partition delivered in order); a replay sends them
        # again (harmless: a watermark only moves forward)
        marks = [(None, Mark(s, wm).to_bytes()) for mb in mapped.values() for s, wm in mb.marks]
        if marks:
            futs += await self._produce(points, {part: marks for part in await self.producer.partitions_for(points)})
        self.inflight = (futs, {tp: recs[-1].offset + 1 for tp, recs in batches.items()})
        m.events_out.labels(enriched).inc(n_enriched)
        m.events_out.labels(dead_topic).inc(n_dead)
        m.events_out.labels(points).inc(n_points)
        m.processing.labels("raw").observe(time.perf_counter() - t0)
        last = max((recs[-1].timestamp for recs in batches.values() if recs[-1].timestamp), default=None)
        if last:
            m.event_lag.labels("raw").observe(max(0.0, time.time() - last / 1000))

    async def _report_progress(self) -> None:
        """Every `progress_interval_s`, tell every points partition which raw partitions are read to
        their end and as of when (`read_to_end`), after the points and marks of what was read: the
        window stage judges a source idle only by that time, never because nobody is reading it."""
        now = time.monotonic()
        if now - self._progress_at < self.progress_interval_s:
            return
        self._progress_at = now
        c = self.consumer
        done: dict[str, int] = {}
        for tp in c.assignment():
            if self.buffers.get(tp) or tp in self.intents or tp in self._unsent:
                continue  # records read but not handed on yet
            try:
                pos = await asyncio.wait_for(c.position(tp), 0.5)
            except (TimeoutError, IllegalStateError, KafkaError):
                continue
            t = read_to_end(pos, c.highwater(tp), c.last_poll_timestamp(tp))
            if t is not None:
                done[f"{tp.topic}:{tp.partition}"] = t
        if not done:
            return
        data = Mark("", NO_TIME, done).to_bytes()
        try:
            for part in await self.producer.partitions_for(self.points):
                fut = await self.producer.send(self.points, data, None, partition=part)
                fut.add_done_callback(_progress_sent)
        except KafkaError as exc:  # best effort: the next report comes in a second
            log.debug("progress report not sent: %s", exc)

    async def _partitioner(self, topic: str) -> Callable[[bytes | None], int]:
        """The producer's own default partitioning (murmur2 of the key), remembered per key: log keys
        (file, service) and series keys repeat, so each is hashed once instead of once per record.
        Records without a key go round robin."""
        parts = sorted(await self.producer.partitions_for(topic))
        memo = self._partition_memo.get(topic)
        if memo is None or memo[0] != parts:
            memo = self._partition_memo[topic] = (parts, {})
        cache = memo[1]
        if len(cache) > 100_000:
            cache.clear()
        pick = DefaultPartitioner()

        def partition(key: bytes | None) -> int:
            if key is None:
                self._rr += 1
                return parts[self._rr % len(parts)]
            p = cache.get(key)
            if p is None:
                p = cache[key] = pick(key, parts, parts)
            return p

        return partition

    @staticmethod
    def _by_partition(records: list[tuple[bytes | None, bytes]],
                      partition: Callable[[bytes | None], int]) -> dict[int, list[tuple[bytes | None, bytes]]]:
        groups: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for kv in records:
            part = partition(kv[0])
            g = groups.get(part)
            if g is None:
                groups[part] = [kv]
            else:
                g.append(kv)
        return groups

    async def _produce(self, topic: str, groups: dict[int, list[tuple[bytes | None, bytes]]]) -> list[Any]:
        """Each partition's records (in order) into aiokafka batches submitted with `send_batch`: one
        acknowledgement future per batch (up to max_batch_size bytes) instead of one per record,
        which cost more than the records themselves (a future, a callback and a gather slot each)."""
        producer, futs = self.producer, []
        for part, recs in groups.items():
            batch = producer.create_batch()
            append = batch.append
            for key, value in recs:
                if append(timestamp=None, key=key, value=value) is None:  # full: submit, start the next
                    futs.append(await producer.send_batch(batch, topic, partition=part))
                    batch = producer.create_batch()
                    append = batch.append
                    if append(timestamp=None, key=key, value=value) is None:
                        raise RuntimeError(f"a record of {len(value)} bytes does not fit an empty batch")
            batch.close()
            futs.append(await producer.send_batch(batch, topic, partition=part))
        return futs

    def _count_dead(self, dl: DeadLetter) -> None:
        self.metrics.dead_letters.labels(dl.error.type).inc()


def _progress_sent(fut: asyncio.Future[Any]) -> None:
    """A progress report that failed is only replaced by the next one (read the error so asyncio does not warn)."""
    if not fut.cancelled() and fut.exception() is not None:
        log.debug("progress report failed: %s", fut.exception())


class _Listener(ConsumerRebalanceListener):
    def __init__(self, reader: RawReader) -> None:
        self.reader = reader

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.reader.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.reader.assigned(set(assigned))
