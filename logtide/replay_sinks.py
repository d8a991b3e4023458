"""Where replayed records go (`logtide replay`): NDJSON lines, another topic, or the streams operators.

Each sink takes one batch at a time (`handle(batch, records)`) and has handled it when the call returns
(written and flushed, acknowledged by Kafka, processed and written), so the reader's positions, and a
resume token, never run ahead of what a sink did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click

from logtide.config import Config
from logtide.kafka_client import connection_kwargs, producer_kwargs
from logtide.replay import TimeMerge, ndjson_line

log = logging.getLogger("logtide.replay")


class NdjsonSink:
    """Record values as NDJSON lines; non-JSON values are counted and skipped."""

    def __init__(self, target: str, append: bool) -> None:
        self.target = target
        self.append = append
        self.name = "stdout" if target == "-" else target
        self._f: IO[bytes] | None = None
        self._own = False
        self.written = 0
        self.malformed = 0
        self.first_malformed: str | None = None

    async def start(self) -> None:
        """Opened once the range is known to be readable: an unknown topic leaves an existing file alone."""
        if self.target == "-":
            self._f = sys.stdout.buffer
        else:
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.target, "ab" if self.append else "wb")  # noqa: SIM115 - closed in close()
            self._own = True

    async def handle(self, batch: Any, records: list[Any]) -> None:
        assert self._f is not None
        lines = []
        for r in records:
            line = ndjson_line(r.value)
            if line is None:
                self.malformed += 1
                self.first_malformed = self.first_malformed or f"partition {batch.partition} offset {r.offset}"
            else:
                lines.append(line)
        if lines:
            self._f.write(b"\n".join(lines) + b"\n")
            self._f.flush()  # a stop after this batch leaves exactly what the resume token says
            self.written += len(lines)

    async def close(self) -> None:
        if self._f is None:
            return
        f, self._f = self._f, None
        with contextlib.suppress(BrokenPipeError):  # `--output - | head`: the reader left; said at exit
            f.flush()
        if self._own:
            f.close()

    def summary(self) -> str:
        s = f"{self.written} records -> {self.name}"
        if self.malformed:
            s += f"; {self.malformed} malformed (not JSON) skipped, first at {self.first_malformed}"
        return s


class TopicSink:
    """Re-publishes records to another topic with their keys, timestamps and headers; each batch is
    acknowledged before the next is read, so a resume neither loses nor repeats one. The partition is
    kept when both topics have as many partitions, else the key decides."""

    def __init__(self, cfg: Config, topic: str, source_partitions: int) -> None:
        self.cfg = cfg
        self.topic = topic
        self.source_partitions = source_partitions
        self.written = 0
        self._producer: Any = None
        self._same_partition = False

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        from logtide.topic_range import UnknownTopic, topic_partitions

        p = AIOKafkaProducer(**producer_kwargs(self.cfg.kafka))
        await p.start()
        self._producer = p
        try:
            parts = await topic_partitions(connection_kwargs(self.cfg.kafka), self.topic)
        except UnknownTopic:
            await p.stop()
            self._producer = None
            raise click.ClickException(f"unknown topic {self.topic!r} for --into-topic (create it first)") from None
        self._same_partition = len(parts) == self.source_partitions

    async def handle(self, batch: Any, records: list[Any]) -> None:
        futs = [
            await self._producer.send(
                self.topic,
                value=r.value,
                key=r.key,
                timestamp_ms=r.timestamp,
                headers=list(r.headers or ()),
                partition=batch.partition if self._same_partition else None,
            )
            for r in records
        ]
        await asyncio.gather(*futs)
        self.written += len(records)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    def summary(self) -> str:
        return f"{self.written} records -> topic {self.topic} (keys, timestamps, headers kept)"


class ProcessSink:
    """Through the streams operators, with fresh state or the state a previous run saved, the way the
    embedded runner drives them
    (`logtide.embedded.process_batch`): NDJSON files under `data_dir` and, with `es_write`, Elasticsearch
    (documents keep their stable ids, so a second replay overwrites instead of duplicating).

    Partitions are merged by record timestamp before the operators see them (a k-way merge held back
    to the slowest partition still being read), because windows follow one stream time: feeding one
    partition's hours before another's would make the second one late. `now` for the skew checks is
    the latest record time handed over, the time the records reached Kafka, so history is judged as it
    was live. Following (`--follow`), a partition with nothing more to read holds nothing back: what it
    brings later is judged by the windows' lateness, as live. Anomalies carry `labels.replay`; nothing is published to the anomalies topic, so a
    replay never pages anyone.

    State: at the end, before the open windows are closed, the operators' state (windows, detectors)
    is saved in `data_dir/state/snapshot.json`, the embedded runner's snapshot format. `state_from`
    (a replay's data directory, or a `logtide run --data-dir`) starts from such a snapshot instead of
    fresh: the detector state of the time that run ended. It is refused when it was saved with other
    window, derive or detect settings (the embedded runner's fingerprint), as that state means nothing
    to other settings."""

    def __init__(self, cfg: Config, data_dir: Path, replay_id: str, *, metrics: bool, topic: str,
                 es_write: Any = None, clickhouse_path: Path | None = None,
                 state_from: Path | None = None) -> None:  # fmt: skip
        from logtide.embedded import Outputs, SnapshotStore, operators_fingerprint
        from logtide.streams.pipeline import Stateful, Stateless

        self.stateless = Stateless(cfg.streams)
        self.stateful = Stateful(cfg.streams)
        self.fingerprint = operators_fingerprint(cfg.streams)
        self.exports: dict[str, str] = {}
        if state_from is not None:
            doc = SnapshotStore(state_from / "state").read()
            if not doc:
                raise click.ClickException(f"--state-from {state_from}: no saved operator state in state/snapshot.json")
            if doc.get("series") and doc.get("operators") != self.fingerprint:
                raise click.ClickException(
                    f"--state-from {state_from}: saved with other window, derive or detect settings; its "
                    "windows and detectors mean nothing to these (start fresh, or use the same settings)"
                )
            for key, blob in doc.get("series", {}).items():
                self.stateful.restore(key, blob.encode())
            self.stateful.take_dirty()
            self.exports = dict(doc.get("series", {}))
        self.state_from = state_from
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        ch = None
        if clickhouse_path is not None:  # embedded ClickHouse (chdb); rows dedup by event id
            from logtide.sinks.clickhouse_sink import ChdbBackend, ClickHouseSink

            clickhouse_path.mkdir(parents=True, exist_ok=True)
            ch = ClickHouseSink(ChdbBackend(clickhouse_path))
        self.clickhouse_path = clickhouse_path
        self.outputs = Outputs(data_dir, clickhouse=ch)
        self.replay_id = replay_id
        self.metrics = metrics
        self.topic = topic
        self.es_write = es_write
        self.counts = {"records": 0, "events": 0, "dead_letters": 0, "aggregates": 0, "anomalies": 0}
        self.reader: Any = None
        self.merge = TimeMerge()
        self.interrupted = False  # set by the run loop when Ctrl-C stopped the range early

    def bind(self, reader: Any) -> None:
        self.reader = reader

    async def handle(self, batch: Any, records: list[Any]) -> None:
        self.merge.add(batch.partition, records, batch.records[-1].timestamp if batch.records else None)
        unfinished = []  # partitions that may still bring older records
        for p, pl in self.reader.plans.items() if self.reader is not None else ():
            pos = batch.next_offset if p == batch.partition else pl.position
            if pl.stop is not None:
                if pos < pl.stop:
                    unfinished.append(p)
            elif not self.reader.caught_up(p, pos):  # following: a quiet partition holds nothing back
                unfinished.append(p)
        await self._release(self.merge.take(self.merge.limit(unfinished)))

    async def _release(self, out: list[Any]) -> None:
        if not out:
            return
        self.counts["records"] += len(out)
        for i in range(0, len(out), 2000):
            await self._process(out[i : i + 2000])

    async def _process(self, records: list[Any]) -> None:
        from logtide.embedded import process_batch

        now = datetime.fromtimestamp(records[-1].timestamp / 1000, UTC)
        res = process_batch(self.stateless, self.stateful, [(r.key, r.value) for r in records],
                            metrics=self.metrics, topic=self.topic, now=now)  # fmt: skip
        res.dead = place_dead_letters(res.dead, records)
        await self._write(res)

    async def _write(self, res: Any) -> None:
        from logtide.schemas import to_document

        for a in res.anomalies:
            a.labels["replay"] = self.replay_id
        self.outputs.write(res)
        c = self.counts
        c["events"] += len(res.enriched)
        c["dead_letters"] += len(res.dead)
        c["aggregates"] += len(res.aggregates)
        c["anomalies"] += len(res.anomalies)
        if self.es_write is not None:
            import orjson

            docs = [orjson.loads(b) for b in res.enriched]
            docs += [to_document(x) for x in (*res.dead, *res.aggregates, *res.anomalies)]
            if docs:
                rejected = await self.es_write(docs)
                for pos, reason in rejected or ():
                    log.warning("elasticsearch: %s not stored: %s", docs[pos].get("event", {}).get("id"), reason)

    async def close(self) -> None:
        from logtide.embedded import BatchResult

        await self._release(self.merge.take_all())
        self.save_state()
        if not self.interrupted:  # the range is over: close every open window
            aggs, anomalies = self.stateful.flush()
            await self._write(BatchResult(aggregates=aggs, anomalies=anomalies))
        # interrupted: open windows stay open in the saved state, for `--resume` with `--state-from`
        self.outputs.close()

    def save_state(self) -> None:
        """The operators' state now (windows still open): what `state_from` continues from."""
        from logtide.embedded import SnapshotStore

        sf = self.stateful
        for k in sf.take_dirty():
            self.exports[k] = sf.export(k).decode()
        extra = {"operators": self.fingerprint, "stream_time_ms": sf.stream_time_ms, "replay": self.replay_id}
        SnapshotStore(self.data_dir / "state").write({}, self.exports, extra)

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c['records']} records processed (replay id {self.replay_id}): {c['events']} events, "
            f"{c['aggregates']} aggregates, {c['anomalies']} anomalies, {c['dead_letters']} dead letters "
            f"-> {self.data_dir}/" + (" and Elasticsearch" if self.es_write is not None else "")
            + (f" and ClickHouse at {self.clickhouse_path}" if self.clickhouse_path is not None else "")
        )


async def elasticsearch_writer(cfg: Config, es_cfg: Any) -> tuple[Any, Any]:
    """`(write, client)` for `ProcessSink(es_write=...)`: the sink command's writer (templates, bulk,
    retries with its policy from `cfg.sinks`), so a replay indexes exactly as `logtide sink` does."""
    from logtide.sink_command import _es_writer, _policy
    from logtide.sinks.metrics import SinkMetrics

    return await _es_writer(es_cfg, _policy("elasticsearch", cfg.sinks, SinkMetrics(), asyncio.Event()))


def place_dead_letters(dead: list[Any], records: list[Any]) -> list[Any]:
    """Give the dead letters of rejected records their Kafka place: partition, offset, the record's
    timestamp, and an id derived from them. The operators make them without one (the embedded runner
    has no offsets) and stamp them with the wall clock; placed, a second replay of the same range
    makes the very same dead letters, which idempotent sinks store once."""
    import base64
    from collections import defaultdict, deque

    from logtide.schemas import stable_id

    by_value: dict[bytes, deque[Any]] = defaultdict(deque)
    for r in records:
        by_value[r.value or b""].append(r)
    out = []
    for d in dead:
        raw = base64.b64decode(d.dead_letter.original_base64)
        queue = by_value.get(raw) if not d.dead_letter.truncated else None
        if d.source.offset is not None or not queue:
            out.append(d)
            continue
        r = queue.popleft()  # the operators reject records in their order
        src = d.source.model_copy(update={"partition": r.partition, "offset": r.offset})
        event = d.event.model_copy(
            update={"id": stable_id("dead_letter", src.stage, src.topic, r.partition, r.offset, raw)}
        )
        ts = datetime.fromtimestamp(r.timestamp / 1000, UTC)
        out.append(d.model_copy(update={"timestamp": ts, "source": src, "event": event}))
    return out
