"""`logtide streams`: thin Faust agents around the operators in `streams.pipeline`.

Topology (one consumer group; every worker runs every agent on the partitions it is assigned):

    logs.raw    --[logs agent: validate, enrich, derive, combine]--> logs.enriched, deadletter,
    metrics.raw --[metrics agent: validate, derive, combine]-------> {app}-points (keyed by series)
    {app}-points --[aggregate agent: guard, rates, windows, detect]--> metrics.agg, anomalies, deadletter

The points topic is the repartition step (as `groupBy` in Kafka Streams): every series lives on one
partition of it, so its window and detector state has one owner. That state lives in the `series`
table (RocksDB store, changelog topic), one value per series, co-partitioned with the points topic;
the aggregate agent keeps a decoded copy of its partitions' state in memory, writes back what a batch
changed, and drops the copy when a partition is revoked, so a worker that takes a partition over
reads it back from the table the changelog restored.

Batching: the agents use `stream.take_events`, and the stateless agents pre-aggregate each batch
per series and pane before it crosses the network (a batch of 1,000 log lines becomes a handful of
points messages). Delivery is at-least-once (Faust flushes the producer before it commits); a replay
of the points topic is skipped per series by offset, so aggregates survive a crash of the aggregating
worker without double counting. Faust's exactly-once mode is not used (faust-streaming issues
#440, #517, #323: crashes at start and duplicates on rebalance).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from faust.streams import _current_event  # the context Faust tables read the partition from
from logtide.schemas import DeadLetter, DeadLetterSource, Topics, encode
from logtide.streams.config import StreamsConfig
from logtide.streams.metrics import StreamsMetrics
from logtide.streams.pipeline import TICK, Combiner, Mark, Stateful, Stateless, late_dead_letter
from mode import CrashingSupervisor

log = logging.getLogger("logtide.streams")


@contextmanager
def _as_event(event: Any) -> Iterator[None]:
    """Make table writes land in `event`'s partition (store and changelog).

    Faust picks a table key's partition from the *current* event; after `take_events` that is the
    last event of the batch, which may come from another partition. We write back each partition's
    state under one of its own events.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class StreamsApp:
    """The Faust app, its topics, table and agents, built from the configuration."""

    def __init__(
        self,
        cfg: StreamsConfig,
        topics: Topics,
        brokers: list[str],
        *,
        credentials: Any = None,
        app_id: str | None = None,
        state_dir: Path | None = None,
        metrics: StreamsMetrics | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self.metrics = metrics or StreamsMetrics()
        self.app_id = app_id or cfg.app_id
        self.stateless = Stateless(cfg)
        self.states: dict[int, Stateful] = {}
        self.trace = bool(os.environ.get("LOGTIDE_STREAMS_TRACE"))  # log offsets of every batch
        state_root = Path(state_dir or cfg.state_dir)
        state_root.mkdir(parents=True, exist_ok=True)
        conf: dict[str, Any] = {
            "broker": [f"kafka://{b}" for b in brokers],
            # faust-streaming registers RocksDB as rocksdb:// and drives it with rocksdict when
            # python-rocksdb is absent; rocksdict:// is not a registered scheme (it would resolve to the
            # rocksdict module itself and fail at start).
            "store": "rocksdb://" if cfg.store.startswith("rocksdict:") else cfg.store,
            "datadir": str(state_root / self.app_id),
            "topic_partitions": cfg.partitions,
            "topic_replication_factor": 1,
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
        self.app = app = faust.App(self.app_id, **conf)

        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        self.t_logs_raw = app.topic(topics.logs_raw, **raw)
        self.t_metrics_raw = app.topic(topics.metrics_raw, **raw)
        self.t_enriched = app.topic(topics.logs_enriched, **raw)
        self.t_agg = app.topic(topics.metrics_agg, **raw)
        self.t_anomalies = app.topic(topics.anomalies, **raw)
        self.t_dead = app.topic(topics.deadletter, **raw)
        self.t_points = app.topic(
            f"{self.app_id}-points", partitions=cfg.partitions, internal=True, **raw
        )
        # key_type/value_type bytes is what makes Faust use the raw codec for a table (it ignores a schema's
        # serializers and falls back to JSON).
        self.table = app.Table("series", partitions=cfg.partitions, key_type=bytes, value_type=bytes)

        app.agent(self.t_logs_raw, name="logs")(self._logs_agent)
        app.agent(self.t_metrics_raw, name="metrics")(self._metrics_agent)
        app.agent(self.t_points, name="aggregate")(self._aggregate_agent)
        app.timer(interval=5.0)(self._update_lag)
        app.timer(interval=1.0)(self._tick)
        app.task(self._on_start)
        app.on_partitions_revoked.connect(self._on_revoked)

    # --- output helpers ---------------------------------------------------------------------------
    # Outputs go straight to the producer (aiokafka batches them) and every batch waits for its acks
    # before its input is acknowledged: at-least-once without Faust's one-message-at-a-time
    # `send_soon` buffer, which made each commit wait seconds for tens of thousands of records.
    async def _send(self, sink: list[Any], topic: str, key: bytes | None, value: bytes) -> None:
        sink.append(await self.app.producer.send(topic, key, value, None, None, None))

    async def _out(self, sink: list[Any], topic: faust.types.TopicT, key: bytes | None, value: bytes) -> None:
        name = topic.get_topic_name()
        await self._send(sink, name, key, value)
        self.metrics.events_out.labels(name).inc()

    async def _dead(self, sink: list[Any], dl: DeadLetter) -> None:
        self.metrics.dead_letters.labels(dl.error.type).inc()
        await self._out(sink, self.t_dead, dl.event.id.encode(), encode(dl))

    @staticmethod
    async def _acked(sink: list[Any]) -> None:
        if sink:
            await asyncio.gather(*sink)
            sink.clear()

    # --- stateless agents -------------------------------------------------------------------------
    async def _logs_agent(self, stream: faust.StreamT) -> None:
        cfg, m = self.cfg, self.metrics
        spec = Stateful(cfg).spec
        name = self.topics.logs_raw
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_seconds):
            t0 = time.perf_counter()
            now = datetime.now(UTC)
            comb = Combiner(spec)
            sink: list[Any] = []
            enriched = self.t_enriched.get_topic_name()
            n_enriched = 0
            for ev in events:
                msg = ev.message
                r = self.stateless.log(msg.value, now, functools.partial(_source, msg), msg.partition)
                if r.dead is not None:
                    await self._dead(sink, r.dead)
                    continue
                if r.skew:
                    m.clock_skew.labels(r.skew).inc()
                if r.untimed:
                    m.untimed.labels(name).inc()
                await self._send(sink, enriched, msg.key, encode(r.event))
                n_enriched += 1
                for p in r.points:
                    comb.add(p, r.src)
            m.events_out.labels(enriched).inc(n_enriched)
            await self._flush_points(sink, comb, "log")
            await self._acked(sink)
            self._observe("logs", name, events, t0)
            if self.trace:
                log.info("logs batch %s", _offsets(events))

    async def _metrics_agent(self, stream: faust.StreamT) -> None:
        cfg, m = self.cfg, self.metrics
        spec = Stateful(cfg).spec
        name = self.topics.metrics_raw
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_seconds):
            t0 = time.perf_counter()
            now = datetime.now(UTC)
            comb = Combiner(spec)
            sink: list[Any] = []
            for ev in events:
                msg = ev.message
                r = self.stateless.metric(msg.value, now, functools.partial(_source, msg), msg.partition)
                if r.dead is not None:
                    await self._dead(sink, r.dead)
                    continue
                if r.skew:
                    m.clock_skew.labels(r.skew).inc()
                if r.untimed:
                    m.untimed.labels(name).inc()
                if r.point is not None:
                    comb.add(r.point, r.src)
            await self._flush_points(sink, comb, "metric")
            await self._acked(sink)
            self._observe("metrics", name, events, t0)

    async def _flush_points(self, sink: list[Any], comb: Combiner, kind: str) -> None:
        """The batch's points, then the watermarks its sources reached, to every partition (after the
        points: a partition never sees a source's watermark before the points it covers)."""
        name = self.t_points.get_topic_name()
        for key, data in comb.drain():
            await self._send(sink, name, key.encode(), data)
        for src, wm in self.stateless.take_marks(kind):
            data = Mark(src, wm).to_bytes()
            for partition in range(self.cfg.partitions):
                sink.append(await self.app.producer.send(name, None, data, partition, None, None))

    def _observe(self, agent: str, topic: str, events: list[Any], t0: float) -> None:
        m = self.metrics
        m.events_in.labels(topic).inc(len(events))
        m.processing.labels(agent).observe(time.perf_counter() - t0)
        if events:
            ts = events[-1].message.timestamp
            if ts:
                m.event_lag.labels(agent).observe(max(0.0, time.time() - ts))

    # --- stateful agent ---------------------------------------------------------------------------
    def _state(self, partition: int) -> Stateful:
        """This partition's state, read back from the table on first use after an assignment."""
        sf = self.states.get(partition)
        if sf is None:
            sf = self.states[partition] = Stateful(self.cfg)
            prefix = f"{partition}|".encode()
            n = 0
            now_ms = int(time.time() * 1000)
            for k, v in self.table.items():
                if k.startswith(prefix) and v is not None:
                    sf.restore(k[len(prefix):].decode(), v, now_ms)
                    n += 1
            if n:
                log.info("partition %d: restored %d series from the table", partition, n)
        return sf

    async def _aggregate_agent(self, stream: faust.StreamT) -> None:
        cfg, m = self.cfg, self.metrics
        lateness = self.spec_lateness = Stateful(cfg).spec.lateness_ms
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_seconds):
            t0 = time.perf_counter()
            now_ms = int(time.time() * 1000)  # processing time: idleness of sources
            sink: list[Any] = []
            by_part: dict[int, list[Any]] = defaultdict(list)
            for ev in events:
                by_part[ev.message.partition].append(ev)
            for partition, evs in by_part.items():
                sf = self._state(partition)
                dups, overflow = sf.duplicates, dict(sf.guard.overflowed)
                for ev in evs:
                    msg = ev.message
                    n = sf.apply(msg.value, msg.offset, now_ms)
                    if n:
                        m.late_events.labels(sf.last_late.reason).inc(n)
                        await self._dead(sink, late_dead_letter(
                            msg.value, sf.last_late, lateness, n,
                            DeadLetterSource(stage="window", topic=msg.topic, partition=partition, offset=msg.offset),
                        ))
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
                with _as_event(evs[-1]):
                    for key in sf.take_dirty():
                        self.table[f"{partition}|{key}".encode()] = sf.export(key)
                if sf.duplicates > dups:
                    m.duplicates.inc(sf.duplicates - dups)
                for metric, c in sf.guard.overflowed.items():
                    if c > overflow.get(metric, 0):
                        m.series_overflow.labels(metric).inc(c - overflow.get(metric, 0))
            await self._acked(sink)
            m.series.set(sum(len(s.series) for s in self.states.values()))
            if self.trace:
                log.info("aggregate batch %s", _offsets(events))
            self._observe("aggregate", self.t_points.get_topic_name(), events, t0)

    async def _tick(self) -> None:
        """A wall-clock tick to every partition of the points topic: windows held by idle sources or by
        the discovery of new ones close even when no input arrives."""
        name = self.t_points.get_topic_name()
        try:
            for partition in range(self.cfg.partitions):
                await self.app.producer.send(name, None, TICK, partition, None, None)
        except Exception as exc:  # a tick is best effort (the next one comes in a second)
            log.debug("tick failed: %s", exc)

    async def _on_start(self) -> None:
        # Faust's producer buffer makes the stream wait whenever more than 100 records are pending
        # (and logs a warning each time); a batch of outputs is larger than that by design.
        self.app.producer.buffer.max_messages = max(1000, 8 * self.cfg.batch_size)
        _quiet_aiokafka_debug()
        if os.environ.get("LOGTIDE_STREAMS_FAST_HANDOFF", "1") != "0":
            _fast_handoff(self.app.consumer)

    async def _on_revoked(self, app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        """Forget the in-memory copy of revoked partitions; the table is the truth on reassignment."""
        points = self.t_points.get_topic_name()
        for tp in revoked:
            if tp.topic == points:
                self.states.pop(tp.partition, None)

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


class _Resumed:
    """Awaitable that carries on a coroutine already stepped once by hand (`first` is what it yielded)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Any:
        coro, step = self.coro, self.first
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation and errors go on into the coroutine
                try:
                    step = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    return done.value


def _fast_handoff(consumer: Any) -> None:
    """Hand each fetched message to its stream without four tasks per message.

    faust's fetch loop passes every message on with `wait_first(callback(message), suspend_flow.wait())`,
    which wraps both, plus the consumer's stopped and crashed events, in new tasks: about a third of a
    worker's time. The callback (decode, put on the stream's queue) almost always finishes without
    waiting, so it is stepped once here; only when it does wait (a full stream buffer) does the rest
    of it go through the original `wait_first`, which still lets a rebalance (`suspend_flow`) or a
    stop interrupt it. Set LOGTIDE_STREAMS_FAST_HANDOFF=0 to turn this off.
    """
    from mode.services import WaitResults

    original = consumer.wait_first

    async def wait_first(*coros: Any, timeout: Any = None) -> Any:
        if (timeout is None and len(coros) == 2 and asyncio.iscoroutine(coros[0])
                and asyncio.iscoroutine(coros[1]) and not consumer.suspend_flow.is_set()
                and not consumer._stopped.is_set() and not consumer._crashed.is_set()):
            first, other = coros
            try:
                step = first.send(None)
            except StopIteration as done:
                other.close()
                return WaitResults([first], [done.value], False)
            except BaseException:
                other.close()
                raise
            return await original(_Resumed(first, step), other)
        return await original(*coros, timeout=timeout)

    consumer.wait_first = wait_first


def _source(msg: Any) -> DeadLetterSource:
    return DeadLetterSource(stage="validate", topic=msg.topic, partition=msg.partition, offset=msg.offset)


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


def _offsets(events: list[Any]) -> str:
    spans: dict[int, list[int]] = {}
    for ev in events:
        spans.setdefault(ev.message.partition, []).append(ev.message.offset)
    return " ".join(f"p{p}:{min(o)}-{max(o)}({len(o)})" for p, o in sorted(spans.items()))


def serve_metrics(metrics: StreamsMetrics, port: int) -> None:
    """Expose the worker's metrics on http://0.0.0.0:port/metrics (0 disables)."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, registry=metrics.registry)
