"""`logtide alerts`: the Kafka alert process (anomalies -> receivers), and `logtide alerts silence`.

At start it reads the notification log and the silences back from their compacted topics, then
replays the last `alerts.replay_lookback` of `anomalies` (event time) to rebuild the open alerts, and
goes live on the wall clock. So a restart neither pages twice (the log says what was sent) nor
forgets a resolve (the replay brings the alert back; the resolve record then ends it).

Several instances share the work: the notification log's topic has `alerts.shards` partitions, the
instances join one consumer group on it, and each alerts for the shards (partitions) the group
assigns it - an alert's shard is a hash of its `shard_by` labels, which every group and inhibition
rule contains (`config check` enforces it). Each instance reads every anomaly but decides, delivers
and logs only its shards' alerts; when the assignment changes (an instance joins, stops or dies),
each rebuilds its state for its new shards from the log and the replay. With one shard, one instance
alerts and the others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from logtide.config import Config
from logtide.config_command import load_for_command
from logtide.kafka_client import connection_kwargs, producer_kwargs
from logtide.schemas import DeadLetter, DeadLetterSource, Topics, encode
from logtide.sinks.alerts.facts import AnomalyFacts, decode_facts, fast_facts

log = logging.getLogger("logtide.alerts")


class AlertProcess:
    """One alert process: Kafka in, receivers out, state in compacted topics."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.topics = Topics(cfg.topics.prefix)
        self.conn = connection_kwargs(cfg.kafka)
        self.stopping = asyncio.Event()
        self.live = asyncio.Event()
        self.engine: Any = None
        self.owned: frozenset[int] = frozenset()  # the shards this instance alerts for
        self.sharding: Any = None
        self._log_shard: dict[str, int] = {}  # notification-log key -> its shard (partition)
        self._pending: set[asyncio.Future[Any]] = set()

    def stop(self) -> None:
        self.stopping.set()

    def _send(self, topic: str, value: bytes | None, key: str | None = None, partition: int | None = None) -> None:
        fut = asyncio.ensure_future(self.producer.send(topic, value, key=key.encode() if key else None,
                                                       partition=partition))
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def run(self) -> None:
        """Wait for shards (partitions of the notification log the alert group assigns us), alert for
        them, rebuild when the assignment changes, stand by while we have none."""
        from aiokafka import AIOKafkaConsumer

        from logtide.sinks.alerts.kafka_state import ensure_topics

        t = self.topics
        shards = self.cfg.alerts.shards
        parts = await ensure_topics(self.conn, [t.alerts, t.anomalies, t.deadletter],
                                    [t.alerts_nflog, t.alerts_silences], self.cfg.topics.partitions,
                                    self.cfg.topics.replication_factor, compacted_partitions={t.alerts_nflog: shards})
        leader = AIOKafkaConsumer(
            **self.conn, group_id=self.cfg.alerts.group_id, enable_auto_commit=False, auto_offset_reset="latest",
            session_timeout_ms=int(self.cfg.alerts.leader_session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(self.cfg.alerts.leader_session_timeout * 1000 / 4)),
        )
        await leader.start()
        leader.subscribe([t.alerts_nflog])
        try:
            while not self.stopping.is_set():
                owned = frozenset(tp.partition for tp in leader.assignment())
                if not owned:
                    await leader.getmany(timeout_ms=300)  # stand by: keeps our membership alive
                    continue
                log.info("owning shards %s of %d in %s: alerting", ",".join(map(str, sorted(owned))), shards,
                         self.cfg.alerts.group_id)
                self.owned = owned
                await self._lead(parts, leader, owned)
                self.owned = frozenset()
                if not self.stopping.is_set():
                    log.warning("shard assignment changed: rebuilding for the new shards")
        finally:
            await leader.stop()

    def _owned_now(self, leader: Any) -> frozenset[int]:
        return frozenset(tp.partition for tp in leader.assignment())

    async def _lead(self, parts: dict[str, list[int]], leader: Any, owned: frozenset[int]) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        from logtide.sinks.alerts.engine import AlertEngine
        from logtide.sinks.alerts.kafka_state import behind, load_nflog, load_silences, read_compacted
        from logtide.sinks.alerts.reconfigure import migrate_legacy_keys
        from logtide.sinks.alerts.routing import build_route
        from logtide.sinks.alerts.shard import Sharding

        t = self.topics
        self.sharding = Sharding.from_config(self.cfg.alerts)
        self._log_shard = {}
        nflog = load_nflog(await read_compacted(self.conn, t.alerts_nflog, sorted(owned)))
        silences = load_silences(await read_compacted(self.conn, t.alerts_silences, parts[t.alerts_silences]))
        self.producer = AIOKafkaProducer(**producer_kwargs(self.cfg.kafka))
        await self.producer.start()
        # log entries written when route ids were positions: under today's ids (no second page after an upgrade;
        # such logs predate sharding, so their topic has one partition)
        for old_key, new_key in migrate_legacy_keys(nflog, build_route(self.cfg.alerts.route)).items():
            self._send(t.alerts_nflog, orjson.dumps(nflog.entries[new_key].to_plain()), new_key)
            self._send(t.alerts_nflog, None, old_key)
        engine = self.engine = AlertEngine(
            self.cfg.alerts, silences=silences, nflog=nflog,
            record=lambda r: self._send(t.alerts, encode(r), r.delivery.group_key if r.delivery else None),
            persist=self._persist,
            on_notification=self._note_shard,
            clock=time.time,
        )
        metrics_server = None
        if self.cfg.alerts.metrics_port:
            from prometheus_client import start_http_server

            try:
                metrics_server, _ = start_http_server(self.cfg.alerts.metrics_port, "127.0.0.1",
                                                      registry=engine.metrics.registry)
            except OSError as exc:
                log.warning("no /metrics on port %d: %s", self.cfg.alerts.metrics_port, exc)
        await engine.start()
        consumer = AIOKafkaConsumer(**self.conn, enable_auto_commit=False, auto_offset_reset="earliest")
        sil_consumer = AIOKafkaConsumer(**self.conn, enable_auto_commit=False, auto_offset_reset="latest")
        await consumer.start()
        await sil_consumer.start()
        sil_task = None
        try:
            tps = [TopicPartition(t.anomalies, p) for p in parts[t.anomalies]]
            consumer.assign(tps)
            since = int((time.time() - self.cfg.alerts.replay_lookback) * 1000)
            offs = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                o = offs.get(tp)
                consumer.seek(tp, o.offset if o is not None else ends[tp])
            # replay: rebuild the open alerts of our shards in event time; nothing is flushed until live
            while await behind(consumer, ends):
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    for m in msgs:
                        a = self._decode(m, owned, replay=True)
                        if a is not None:
                            engine.dispatcher.ingest(a, a.ts)
            log.info("replayed %d open alerts; live", len(engine.dispatcher.alerts))
            sil_tps = [TopicPartition(t.alerts_silences, p) for p in parts[t.alerts_silences]]
            sil_consumer.assign(sil_tps)
            sil_task = asyncio.create_task(self._follow_silences(sil_consumer, silences))
            if engine.cfg is not self.cfg.alerts:  # reloaded while this instance was getting ready
                engine.reconfigure(self.cfg.alerts)
            self.live.set()
            while not self.stopping.is_set():
                await leader.getmany(timeout_ms=0)  # membership heartbeat; a rebalance may move shards
                if self._owned_now(leader) != owned:
                    break
                batch = await consumer.getmany(timeout_ms=int(self.cfg.alerts.tick_seconds * 1000),
                                               max_records=5000)
                got = [a for msgs in batch.values() for m in msgs if (a := self._decode(m, owned)) is not None]
                engine.ingest_batch(got, time.time())
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            if sil_task is not None:
                sil_task.cancel()
            if not self.stopping.is_set():  # shards move: finish what is being delivered, so it is logged
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(engine.drain(), 5)
            await engine.close()
            if self._pending:
                await asyncio.gather(*list(self._pending), return_exceptions=True)
            await self.producer.stop()
            await consumer.stop()
            await sil_consumer.stop()
            self.live.clear()

    async def apply_config(self, new: Config) -> None:
        """A reloaded configuration (SIGHUP, --watch-config): routing, receivers, inhibition, timers and
        the file's silences apply at once (`sinks.alerts.reconfigure`); every other changed key is named
        as needing a restart and keeps its running value. A standby keeps it for when it leads."""
        from logtide.config_reload import apply_log_level, keep_running, log_restart_needed, split_changes
        from logtide.sinks.alerts.reconfigure import LIVE_KEYS, SECTIONS

        live, restart = split_changes(self.cfg, new, LIVE_KEYS, SECTIONS)
        log_restart_needed(log, restart)
        merged = keep_running(self.cfg, new, restart)
        self.cfg = merged
        if "logging.level" in live:
            apply_log_level(merged)
        what = f"applied live: {', '.join(live)}" if live else "nothing to apply live"
        engine = self.engine
        if engine is not None and self.live.is_set():
            now = time.time()
            out = engine.reconfigure(merged.alerts)
            engine.tick(now)
            what += (f"; groups: {out.kept} kept, {out.retired} retired "
                     f"(they send only the resolves they owe), {out.new_groups} new; silences from the file: "
                     f"{out.silences_added} added, {out.silences_ended} ended")
        log.info("configuration reloaded: %s", what)

    def _note_shard(self, n: Any) -> None:
        """Remember which shard (notification-log partition) a group's log key belongs to."""
        self._log_shard[n.log_key] = self.sharding.of_labels(n.group_labels)

    def _persist(self, key: str, entry: Any) -> None:
        """One notification-log change to its shard's partition of the compacted topic (None: a tombstone)."""
        p = self._log_shard.get(key)
        if p is None:  # not notified by this run (e.g. a key renamed): its group's labels say
            for name in self.engine.items:
                g = self.engine.dispatcher.groups.get(key.removesuffix(f"/{name}")) if key.endswith(f"/{name}") \
                    else None
                if g is not None:
                    p = self.sharding.of_labels(g.labels)
                    break
        if p is None and entry is None:  # a tombstone: on every shard we own (one of them holds the key)
            for q in sorted(self.owned):
                self._send(self.topics.alerts_nflog, None, key, q)
            return
        if p is None:
            log.warning("notification log key %s of no known group: written to shard 0", key)
            p = 0
        if entry is None:
            self._log_shard.pop(key, None)
        else:
            if len(self._log_shard) >= 200_000:  # bounded: a key forgotten here is found again (see above)
                self._log_shard.clear()
            self._log_shard[key] = p
        self._send(self.topics.alerts_nflog, None if entry is None else orjson.dumps(entry.to_plain()), key, p)

    async def _follow_silences(self, consumer: Any, silences: Any) -> None:
        from logtide.sinks.alerts.kafka_state import load_silences

        while True:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                load_silences([(m.key.decode() if m.key else "", m.value) for m in msgs], silences)

    def _decode(self, m: Any, owned: frozenset[int], replay: bool = False) -> AnomalyFacts | None:
        """The record's facts when its alert is in our shards (other shards' records are skipped after
        a cheap look at their labels). A malformed record is dead-lettered once: by the owner of its
        shard, or of shard 0 when its shard cannot be told; not again when replayed."""
        raw = m.value or b""
        shard = self.sharding.probe(raw)
        if shard is not None and shard not in owned:
            return None
        a = fast_facts(raw)
        if a is None:  # the model decides (and names what is wrong)
            a = decode_facts(raw, DeadLetterSource(stage="alerts", topic=m.topic, partition=m.partition,
                                                   offset=m.offset))
        if isinstance(a, DeadLetter):
            if (shard is not None or 0 in owned) and not replay:
                self.engine.metrics.dead_letters.inc()
                self._send(self.topics.deadletter, encode(a))
            return None
        return a if self.sharding.of_facts(a) in owned else None


async def _silence_io(cfg: Config) -> tuple[Any, Any]:
    from logtide.sinks.alerts.kafka_state import ensure_topics, load_silences, read_compacted

    conn = connection_kwargs(cfg.kafka)
    t = Topics(cfg.topics.prefix)
    parts = await ensure_topics(conn, [], [t.alerts_silences])
    return load_silences(await read_compacted(conn, t.alerts_silences, parts[t.alerts_silences])), t


async def _put_silence(cfg: Config, s: Any) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(**producer_kwargs(cfg.kafka))
    await p.start()
    try:
        await p.send_and_wait(Topics(cfg.topics.prefix).alerts_silences, orjson.dumps(s.to_plain()),
                              key=s.id.encode())
    finally:
        await p.stop()


@click.group("alerts", invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option("--bootstrap", help="Override kafka.bootstrap_servers.")
@click.option("--watch-config", is_flag=True, help="Reload the configuration file when it changes (as SIGHUP).")
@click.pass_context
def alerts(ctx: click.Context, config_path: str | None, bootstrap: str | None, watch_config: bool) -> None:
    """Route anomalies to people: grouping, inhibition, silences, resolves; webhook, Slack, PagerDuty,
    Alertmanager. Without a subcommand, runs the alert process; SIGHUP (or --watch-config) reloads
    routing, receivers, inhibition, timers and the file's silences live, and names what needs a restart."""
    ctx.obj = (config_path, bootstrap)
    if ctx.invoked_subcommand is not None:
        return
    if watch_config and not config_path:
        raise click.UsageError("--watch-config needs --config FILE")
    from logtide.config_reload import file_state

    since = file_state(config_path) if config_path else None  # a change during start-up is a reload too
    cfg = load_for_command(config_path, bootstrap)
    logging.basicConfig(level=cfg.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def load() -> Config:
        from logtide.config import load_config

        new = load_config(config_path)
        if bootstrap:
            new.kafka.bootstrap_servers = bootstrap.split(",")
        return new

    async def main() -> None:
        from logtide.config_reload import Reloader, install

        proc = AlertProcess(cfg)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proc.stop)
        watcher = install(Reloader(load if config_path else None, proc.apply_config, log),
                          config_path if watch_config else None, since)
        log.info("configuration reload on SIGHUP%s", f" and on changes of {config_path}" if watcher else "")
        try:
            await proc.run()
        finally:
            if watcher is not None:
                watcher.cancel()

    asyncio.run(main())


def _cfg(ctx: click.Context, config_path: str | None, bootstrap: str | None) -> Config:
    parent = ctx.find_root().obj or (None, None)
    return load_for_command(config_path or parent[0], bootstrap or parent[1])


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@alerts.group("silence")
def silence() -> None:
    """Create, list and expire silences (stored in a compacted topic, honoured by every alert process)."""


_common = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Configuration file."),
    click.option("--bootstrap", help="Override kafka.bootstrap_servers."),
]


def _with_common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


@silence.command("add")
@_with_common
@click.option("--matcher", "-m", "matchers", multiple=True, required=True,
              help='Label matcher, e.g. service="checkout" or metric=~"log.*" (repeatable; all must match).')
@click.option("--duration", default="2h", show_default=True, help="How long, from --start (30m, 2h, 1h30m).")
@click.option("--start", "start", type=click.DateTime(), help="Start (UTC); default now.")
@click.option("--author", default="", help="Who silences.")
@click.option("--comment", default="", help="Why.")
@click.pass_context
def silence_add(ctx: click.Context, *, config_path: str | None, bootstrap: str | None, matchers: tuple[str, ...],
                duration: str, start: datetime | None, author: str, comment: str) -> None:
    """Add a silence; prints its id."""
    from logtide.sinks.alerts.config import parse_duration
    from logtide.sinks.alerts.silence import Silence

    cfg = _cfg(ctx, config_path, bootstrap)
    now = time.time()
    begin = start.replace(tzinfo=UTC).timestamp() if start else now
    try:
        s = Silence.new(list(matchers), starts_at=begin, ends_at=begin + parse_duration(duration),
                        created_by=author, comment=comment, now=now)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    asyncio.run(_put_silence(cfg, s))
    click.echo(s.id)


@silence.command("list")
@_with_common
@click.option("--all", "show_all", is_flag=True, help="Expired silences too.")
@click.pass_context
def silence_list(ctx: click.Context, config_path: str | None, bootstrap: str | None, show_all: bool) -> None:
    """List silences: id, state, matchers, start, end, author, comment."""
    cfg = _cfg(ctx, config_path, bootstrap)
    silences, _ = asyncio.run(_silence_io(cfg))
    now = time.time()
    for s in silences.list():
        st = s.state(now)
        if st == "expired" and not show_all:
            continue
        click.echo(f"{s.id}  {st:8} {' '.join(s.matchers)}  {_iso(s.starts_at)} -> {_iso(s.ends_at)}  "
                   f"{s.created_by}: {s.comment}")


@silence.command("expire")
@_with_common
@click.argument("silence_id")
@click.pass_context
def silence_expire(ctx: click.Context, config_path: str | None, bootstrap: str | None, silence_id: str) -> None:
    """End a silence now (it stays listed with --all)."""
    cfg = _cfg(ctx, config_path, bootstrap)
    silences, _ = asyncio.run(_silence_io(cfg))
    if silence_id not in silences.by_id:
        raise click.ClickException(f"no silence {silence_id}")
    e = silences.expire(silence_id, time.time())
    asyncio.run(_put_silence(cfg, e))
    click.echo(f"expired {silence_id}")
