"""`logtide streams`: the batch reader for the raw topics plus a Faust agent for the windowed state.

Topology (every worker runs both halves on the partitions it is assigned):

    logs.raw, metrics.raw --[RawReader: validate, enrich, derive, combine per batch]--> logs.enriched,
                            deadletter, {app}-points (one message per series per batch, then the
                            batch's source watermarks to every partition; the app adds a 1 s wall-clock tick)
    {app}-points --[aggregate agent: fold once, rates, windows, detect]--> metrics.agg, anomalies, deadletter

The raw topics are read in batches by `streams.raw_reader` (own consumer group `{app}-raw`, raw
offsets committed only after the batch's outputs are acknowledged, batch cuts announced in the commit
metadata so a replay cuts the same). Faust keeps what it is good at: the points topic is the
repartition step (every series lives on one partition of it), its state lives in the `series` table
(RocksDB store, changelog topic), one value per series holding the window/detector state and the
offset marks that make every per-series message fold exactly once (`streams.batch.BatchFolder`).
The aggregate agent keeps a decoded copy of its partitions' state in memory, writes back what a batch
changed, and drops the copy when a partition is revoked. Faust's exactly-once mode is not used
(faust-streaming issues #440, #517, #323); the marks make replays harmless instead.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import faust
from logtide.schemas import DeadLetter, DeadLetterSource, Topics, encode
from logtide.streams.batch import (
    BATCH_TAG,
    BatchFolder,
    BatchMapper,
    SeriesBatch,
    late_batch_dead_letter,
    operator_dead_letter,
    refused_dead_letter,
)
from logtide.streams.config import StreamsConfig
from logtide.streams.faust_compat import (
    as_event,
    commit_only_acknowledged,
    committed_offset,
    fetched_before_rebalance,
    leave_uncommitted,
    read_again_from,
    widen_producer_buffer,
)
from logtide.streams.in_order import InOrder
from logtide.streams.metrics import StreamsMetrics
from logtide.streams.pipeline import TICK, Stateful, Stateless, late_dead_letter
from logtide.streams.raw_reader import RawReader
from mode import CrashingSupervisor

log = logging.getLogger("logtide.streams")


class PortInUse(RuntimeError):
    """A worker port (metrics or web) is taken: several workers on one host need their own ports."""


def check_port_free(port: int, what: str, host: str = "0.0.0.0") -> None:
    """Fail early with a clear message when `port` is taken (0 means disabled)."""
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"streams.{what} {port} is already in use ({exc.strerror}); give each worker on this host "
                f"its own port (or 0 to disable)"
            ) from None


class StallFence:
    """Holds table writes back after the worker's event loop stood still (SIGSTOP, a swapped-out host,
    a long pause) for more than `threshold` seconds, for `hold` seconds.

    A worker frozen past the session timeout has lost its partitions without knowing it; woken up, it
    would write the state of its last batch to the changelog after the new owner's newer state (the
    changelog keeps the last write), and the next owner would restore that older state. Held back, the
    write comes after the group told the worker what it still owns. Pure: time is passed in.
    """

    def __init__(self, threshold: float, hold: float) -> None:
        self.threshold, self.hold = threshold, hold
        self.last_tick: float | None = None
        self.until = 0.0
        self.stalls = 0

    def tick(self, now: float) -> bool:
        """Called about every second by a timer on the same loop; True when it finds a stall."""
        stalled = self._check(now)
        self.last_tick = now
        return stalled

    def wait(self, now: float) -> float:
        """Seconds to hold a table write back (0: write now); sees a stall its timer has not seen yet."""
        self._check(now)
        return max(0.0, self.until - now)

    def _check(self, now: float) -> bool:
        if self.last_tick is not None and now - self.last_tick > self.threshold and now >= self.until:
            self.until = now + self.hold
            self.stalls += 1
            return True
        return False


class StreamsApp:
    """The Faust app, its points topic, table and aggregate agent, and the raw batch reader."""

    def __init__(
        self,
        cfg: StreamsConfig,
        topics: Topics,
        brokers: list[str],
        *,
        credentials: Any = None,
        client_kwargs: dict[str, Any] | None = None,
        app_id: str | None = None,
        state_dir: Path | None = None,
        metrics: StreamsMetrics | None = None,
        settings: dict[str, Any] | None = None,
        partitions: int | None = None,
        replication_factor: int = 1,
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self.metrics = metrics or StreamsMetrics()
        self.app_id = app_id or cfg.app_id
        self.partitions = cfg.partitions or partitions or 6
        self.folders: dict[int, BatchFolder] = {}
        self.owned: set[int] = set()  # points partitions assigned to this worker now (folders exist only for these)
        self.order = InOrder()  # each points partition folded in offset order, without a hole
        self._read_again_at: dict[int, float] = {}
        heartbeat = min(3.0, cfg.session_timeout_seconds / 4)
        self.fence = StallFence(cfg.session_timeout_seconds / 2, max(2.0, 3 * heartbeat))
        self._evicted_at: dict[int, float] = {}
        state_root = Path(state_dir or cfg.state_dir)
        state_root.mkdir(parents=True, exist_ok=True)
        conf: dict[str, Any] = {
            "broker": [f"kafka://{b}" for b in brokers],
            # faust-streaming registers RocksDB as rocksdb:// and drives it with rocksdict when
            # python-rocksdb is absent; rocksdict:// is not a registered scheme.
            "store": "rocksdb://" if cfg.store.startswith("rocksdict:") else cfg.store,
            "datadir": str(state_root / self.app_id),
            "topic_partitions": self.partitions,
            "topic_replication_factor": replication_factor,
            "consumer_auto_offset_reset": "earliest",
            "web_enabled": cfg.web_port != 0,
            "web_port": cfg.web_port or 6066,
            "broker_commit_interval": cfg.commit_interval_seconds,
            "broker_session_timeout": cfg.session_timeout_seconds,
            "broker_heartbeat_interval": min(3.0, cfg.session_timeout_seconds / 4),
            "producer_acks": -1,
            "producer_linger_ms": 5,
            "stream_buffer_maxsize": max(4096, 4 * cfg.batch_size),
            "table_standby_replicas": 0,
            "stream_wait_empty": False,
            # an agent that crashes takes the worker down (to be restarted and resume from the last
            # commit) instead of leaving its partitions silently unprocessed
            "agent_supervisor": CrashingSupervisor,
        }
        if credentials is not None:
            conf["broker_credentials"] = credentials
        conf.update(settings or {})
        commit_only_acknowledged()
        self.app = app = faust.App(self.app_id, **conf)

        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        self.t_agg = app.topic(topics.metrics_agg, **raw)
        self.t_anomalies = app.topic(topics.anomalies, **raw)
        self.t_dead = app.topic(topics.deadletter, **raw)
        self.t_points = app.topic(
            f"{self.app_id}-points", partitions=self.partitions, replicas=replication_factor, internal=True, **raw
        )
        # key_type/value_type bytes is what makes Faust use the raw codec for a table (it ignores a schema's
        # serializers and falls back to JSON).
        self.table = app.Table("series", partitions=self.partitions, key_type=bytes, value_type=bytes)

        kw = dict(client_kwargs or {"bootstrap_servers": ",".join(brokers)})
        self.reader = RawReader(
            BatchMapper(cfg, Stateless(cfg)), topics, self.t_points.get_topic_name(), group_id=f"{self.app_id}-raw",
            client_kwargs=kw, metrics=self.metrics, max_records=cfg.raw_batch_size, poll_ms=round(cfg.batch_within_seconds * 1000),
            session_timeout_ms=round(cfg.session_timeout_seconds * 1000), compression=cfg.compression,
            on_error=self._reader_failed, legacy_group=self.app_id,
        )
        app.agent(self.t_points, name="aggregate")(self._aggregate_agent)
        app.timer(interval=5.0)(self._update_lag)
        app.timer(interval=1.0)(self._tick)
        app.timer(interval=0.5)(self._watch_stalls)
        app.task(self._on_start)
        self._reader_started = False  # the reader starts once the aggregator is ready (`_on_ready`)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_rebalance_complete.connect(self._on_ready)

    def apply_config(self, cfg: StreamsConfig) -> None:
        """Take over a reloaded configuration (its restart-only keys already set back to the running
        values, see `streams.reload`): the operators of every partition held now and of those assigned
        later. Series and detector states stay; the next batch is judged with the new settings."""
        from logtide.streams.reload import apply_stateful, apply_stateless

        self.cfg = cfg
        for f in self.folders.values():
            apply_stateful(f.sf, cfg)
        apply_stateless(self.reader.mapper.stateless, cfg)

    # --- output helpers ---------------------------------------------------------------------------
    # Outputs go straight to the producer (aiokafka batches them) and every batch waits for its acks
    # before its input is acknowledged.
    async def _out(self, sink: list[Any], topic: faust.types.TopicT, key: bytes | None, value: bytes) -> None:
        name = topic.get_topic_name()
        sink.append(await self.app.producer.send(name, key, value, None, None, None))
        self.metrics.events_out.labels(name).inc()

    async def _dead(self, sink: list[Any], dl: DeadLetter) -> None:
        self.metrics.dead_letters.labels(dl.error.type).inc()
        await self._out(sink, self.t_dead, dl.event.id.encode(), encode(dl))

    @staticmethod
    async def _acked(sink: list[Any]) -> None:
        if sink:
            await asyncio.gather(*sink)
            sink.clear()

    # --- stateful agent ---------------------------------------------------------------------------
    def _folder(self, partition: int) -> BatchFolder:
        """This partition's state, read back from the table on first use after an assignment."""
        f = self.folders.get(partition)
        if f is None:
            f = self.folders[partition] = BatchFolder(Stateful(self.cfg, reader_progress=True))
            prefix = f"{partition}|".encode()
            n = 0
            now_ms = int(time.time() * 1000)
            for k, v in self.table.items():
                if k.startswith(prefix) and v is not None:
                    f.restore(k[len(prefix):].decode(), v, now_ms)
                    n += 1
            if n:
                log.info("partition %d: restored %d series from the table", partition, n)
        return f

    def _fold(self, f: BatchFolder, data: bytes, offset: int, now_ms: int) -> int | None:
        """One points message in; late event count (None for a replay). Older single points and
        partials (written before the batch path) still fold, deduplicated by points offset."""
        if data[:5] == BATCH_TAG:
            return f.fold(SeriesBatch.from_bytes(data), now_ms)
        n = f.sf.apply(data, offset, now_ms)  # also source watermark marks and wall-clock ticks
        f.last_late = f.sf.last_late
        return n

    async def _aggregate_agent(self, stream: faust.StreamT) -> None:
        cfg, m = self.cfg, self.metrics
        lateness = Stateful(cfg).spec.lateness_ms
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_seconds):
            t0 = time.perf_counter()
            now_ms = int(time.time() * 1000)  # processing time: idleness of sources
            sink: list[Any] = []
            by_part: dict[int, list[Any]] = defaultdict(list)
            for ev in events:
                by_part[ev.message.partition].append(ev)
            for partition, got in by_part.items():
                # Messages read before a rebalance (the batch was taken, then the group changed) are left
                # uncommitted: they are read again from the committed offset, in order, with the state, by
                # the partition's owner (this worker again, or another). Folded here, they would rebuild a
                # revoked partition's state from a table this worker no longer holds, or come before the
                # earlier messages read again after the rebalance (which the offset marks then skip).
                owned = partition in self.owned
                evs = [ev for ev in got if owned and not fetched_before_rebalance(self.app, ev)]
                if len(evs) < len(got):
                    kept = {id(ev) for ev in evs}
                    leave_uncommitted([ev for ev in got if id(ev) not in kept])
                    log.info("partition %d: %d message(s) read before a rebalance left uncommitted",
                             partition, len(got) - len(evs))
                    if not evs:
                        continue
                evs = await self._in_order(partition, evs)
                if not evs:
                    continue
                f = self._folder(partition)
                sf = f.sf
                dups, overflow = f.duplicates + sf.duplicates, dict(sf.guard.overflowed)
                refused = dict(sf.guard.refused)
                for ev in evs:
                    msg = ev.message
                    src = DeadLetterSource(stage="window", topic=msg.topic, partition=partition, offset=msg.offset)
                    try:
                        before = sf.guard.refused_total
                        n = self._fold(f, msg.value, msg.offset, now_ms)
                        if sf.guard.refused_total > before:
                            await self._dead(sink, self._refused(sf, msg.value, sf.guard.refused_total - before, src))
                        if n:
                            late = f.last_late
                            m.late_events.labels(late.reason if late else "window_closed").inc(n)
                            dl = (late_batch_dead_letter(msg.value, f.late_ts, late, lateness, n=n, source=src)
                                  if msg.value[:5] == BATCH_TAG
                                  else late_dead_letter(msg.value, sf.last_late, lateness, n, src))
                            await self._dead(sink, dl)
                    except Exception as exc:  # one bad message must not crash-loop the worker
                        await self._dead(sink, operator_dead_letter(msg.value, "window", exc, src))
                aggs, anomalies = sf.advance(now_ms)
                report = sf.late_report(now_ms)
                if report:
                    log.warning("partition %d: %s", partition, report)
                for a in aggs:
                    await self._out(sink, self.t_agg, a.series.key.encode(), encode(a))
                m.windows_closed.inc(len(aggs))
                for an in anomalies:
                    await self._out(sink, self.t_anomalies, an.series.key.encode(), encode(an))
                    m.anomalies.labels(an.severity.value).inc()
                evicted = self._evict(f, partition)
                # The windows this batch closed must be acknowledged before the state that says "emitted"
                # is written: a kill in between then re-emits them (same ids, same contents) instead of
                # losing them.
                await self._acked(sink)
                hold = self.fence.wait(time.monotonic())
                if hold:  # the loop stood still: let the group say whether this partition is still ours
                    await asyncio.sleep(hold)
                if self.folders.get(partition) is not f:  # revoked meanwhile: whoever owns it now folds them again
                    leave_uncommitted(evs)
                    log.info("partition %d: revoked while a batch was folded; its state is not written and "
                             "its %d message(s) are left uncommitted", partition, len(evs))
                    continue
                with as_event(evs[-1]):
                    for key in f.take_dirty():
                        self.table[f"{partition}|{key}".encode()] = f.export(key)
                    for key in evicted:
                        self.table.pop(f"{partition}|{key}".encode(), None)
                if f.duplicates + sf.duplicates > dups:
                    m.duplicates.inc(f.duplicates + sf.duplicates - dups)
                for metric, c in sf.guard.overflowed.items():
                    if c > overflow.get(metric, 0):
                        m.series_overflow.labels(metric).inc(c - overflow.get(metric, 0))
                for reason, c in sf.guard.refused.items():
                    if c > refused.get(reason, 0):
                        m.cardinality_refused.labels(reason).inc(c - refused.get(reason, 0))
            m.series.set(sum(len(x.sf.series) for x in self.folders.values()))
            m.metric_names.set(sum(x.sf.guard.names_count() for x in self.folders.values()))
            m.events_in.labels(self.t_points.get_topic_name()).inc(len(events))
            m.processing.labels("aggregate").observe(time.perf_counter() - t0)

    async def _in_order(self, partition: int, evs: list[Any]) -> list[Any]:
        """The events that continue the partition in offset order; those after a hole are left
        uncommitted and the partition is read again from the hole (at most once a second)."""
        tp = evs[0].message.tp
        if not self.order.started(partition):
            self.order.start(partition, committed_offset(self.app, tp))
        n = self.order.admit(partition, [ev.message.offset for ev in evs])
        if n == len(evs):
            return evs
        leave_uncommitted(evs[n:])
        hole = self.order.next[partition]
        now = time.monotonic()
        if now - self._read_again_at.get(partition, -1e9) >= 1.0:
            self._read_again_at[partition] = now
            log.info("partition %d: offset %d delivered while %d was due: %d message(s) left uncommitted, read "
                     "again from %d", partition, evs[n].message.offset, hole, len(evs) - n, hole)
            await read_again_from(self.app, tp, hole)
        return evs[:n]

    @staticmethod
    def _refused(sf: Stateful, data: bytes, n: int, src: DeadLetterSource) -> DeadLetter:
        """The dead letter of a points message whose events the cardinality guard refused."""
        metric = SeriesBatch.from_bytes(data).metric if data[:5] == BATCH_TAG else "?"
        return refused_dead_letter(data, sf.guard.why(sf.guard.last_refusal, metric, n), src)

    def _evict(self, f: BatchFolder, partition: int) -> list[str]:
        """Idle series out of memory and the table, at most every 30 s per partition (bounded state)."""
        after = self.cfg.series_evict_after_seconds
        now = time.monotonic()
        if after is None or now - self._evicted_at.get(partition, 0.0) < 30.0:
            return []
        self._evicted_at[partition] = now
        gone = f.evict_idle(round(after * 1000))
        if gone:
            self.metrics.series_evicted.inc(len(gone))
            log.info("partition %d: evicted %d idle series", partition, len(gone))
        return gone

    async def _watch_stalls(self) -> None:
        if self.fence.tick(time.monotonic()):
            log.warning("the worker stood still for more than %.1f s (half the session timeout): table writes "
                        "wait %.1f s for the group to confirm its partitions", self.fence.threshold, self.fence.hold)

    async def _tick(self) -> None:
        """A wall-clock tick to every partition of the points topic: windows held by idle sources or by
        the discovery of new ones close even when no input arrives."""
        name = self.t_points.get_topic_name()
        try:
            for partition in range(self.partitions):
                await self.app.producer.send(name, None, TICK, partition, None, None)
        except Exception as exc:  # a tick is best effort (the next one comes in a second)
            log.debug("tick failed: %s", exc)

    async def _on_start(self) -> None:
        widen_producer_buffer(self.app, max(1000, 8 * self.cfg.batch_size))
        _quiet_aiokafka_debug()

    async def _reader_failed(self, exc: BaseException) -> None:
        """The raw reader died: take the worker down (to be restarted) rather than run half a pipeline."""
        await self.app.crash(exc)

    async def _on_assigned(self, app: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        """Keep the in-memory copy only of partitions owned before and after; a newly assigned one is
        read from the table (recovered by then) on first use."""
        log.info("assigned (faust group %s): %s", self.app_id, describe_assignment(assigned))
        points = self.t_points.get_topic_name()
        now = {tp.partition for tp in assigned if tp.topic == points}
        for p in [p for p in self.folders if p not in now or p not in self.owned]:
            del self.folders[p]
        for p in range(self.partitions):
            if p not in now or p not in self.owned:
                self.order.forget(p)
        self.owned = now

    async def _on_ready(self, app: faust.App, **kwargs: Any) -> None:
        log.info("worker ready (faust group %s): tables recovered", self.app_id)
        if not self._reader_started:
            # Only now: the raw batches' points would wait for the aggregator anyway, and reading earlier
            # made the reader share the CPU with Faust's start-up (joins, recovery, metadata).
            self._reader_started = True
            tune_gc()
            app.add_future(self.reader.run())

    async def _on_revoked(self, app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        """Forget the in-memory copy of revoked partitions; the table is the truth on reassignment."""
        points = self.t_points.get_topic_name()
        for tp in revoked:
            if tp.topic == points:
                self.folders.pop(tp.partition, None)
                self.owned.discard(tp.partition)
                self.order.forget(tp.partition)

    async def _update_lag(self) -> None:
        consumer = self.app.consumer
        try:
            for tp in consumer.assignment():
                pos = await consumer.position(tp)
                hw = consumer.highwater(tp)
                if pos is not None and hw is not None:
                    self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - pos))
        except Exception as exc:  # lag is best effort: never take the worker down for a gauge
            log.debug("lag update failed: %s", exc)


def tune_gc() -> None:
    """The cyclic garbage collector for a worker whose start-up is over: what start-up made (modules,
    Faust's services) leaves the collected generations (`gc.freeze`), and the youngest generation is
    collected every 20,000 allocations instead of 700 (a batch allocates a few dicts per record, almost
    none in cycles). Measured on the streams bench: about 10 % less CPU per event."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def describe_assignment(tps: Any) -> str:
    """`topic=[0, 1] other=[2]`: one line per assignment in the worker's log (operators and tests read it)."""
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in tps:
        by_topic[tp.topic].append(tp.partition)
    return " ".join(f"{t}={sorted(p)}".replace(" ", "") for t, p in sorted(by_topic.items())) or "nothing"


def _quiet_aiokafka_debug() -> None:
    """Stop aiokafka building a debug record for every message sent when nothing prints it.

    faust's Worker sets the root logger to DEBUG to drive its terminal spinner (it spins on every
    record), so aiokafka's per-message `log.debug` in `send` created a LogRecord per output that every
    real handler then dropped: about a tenth of the worker's time. Left alone when a real handler
    shows debug records (`--loglevel debug`).
    """
    root = logging.getLogger()
    shown = [h.level for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
    if shown and min(shown) > logging.DEBUG:
        lg = logging.getLogger("aiokafka")
        if lg.level == logging.NOTSET or lg.level < logging.INFO:
            lg.setLevel(logging.INFO)


def serve_metrics(metrics: StreamsMetrics, port: int) -> None:
    """Expose the worker's metrics on http://0.0.0.0:port/metrics (0 disables)."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, registry=metrics.registry)
