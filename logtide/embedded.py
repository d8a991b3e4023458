"""The embedded pipeline (`logtide run`): shipper, operators and detectors in one process, no Kafka.

    files --Shipper (same inputs, parsers, multiline)--> AckQueueOutput (bounded queue)
          --Stateless (validate, enrich, derive)--> Stateful (cardinality, rates, windows, detect)
          --> enriched / aggregates / anomalies / deadletter .ndjson under the data directory

Delivery (what is and is not guaranteed):

- At-least-once from the files to the NDJSON outputs. A batch is acknowledged to the shipper only
  after its results were written and flushed to the output files, so the shipper's read offsets
  never run ahead of what was written.
- The operators' state (open windows, counters, detectors) and the shipper's read offsets are saved
  together, in one file (`state/snapshot.json`: temp file, fsync, rename, fsync of the directory),
  and only at a quiet moment: processing paused and every acknowledged batch folded into the offsets,
  so the saved state reflects exactly the input before the saved offsets. The output files are
  fsynced before each snapshot. A restart resumes from the last snapshot.
- After a crash (kill -9, power loss) the input read between the last snapshot (every
  `snapshot_interval_s`, one second by default) and the crash is processed again: its enriched events,
  dead letters, aggregates and anomalies may appear twice in the files. Every document carries a
  stable `event.id` (a log line's id is derived from its file and byte offset; an aggregate's and an
  anomaly's from the series and window), so duplicates are identifiable and idempotent sinks
  (ClickHouse ReplacingMergeTree, Elasticsearch `_id`) drop them. Aggregates are not double counted:
  the windows are restored from the snapshot, not replayed on top of it.
- A torn last line (a crash in the middle of a write) is cut off at the next start; its batch was not
  acknowledged, so it is processed again.
- A snapshot remembers the window, derive and detect settings it was taken with; when they change,
  the windows and detectors start afresh (a warning says so) and the read offsets are kept.
- One runner per data directory (a lock file); a second one exits with an error.
- Not guaranteed: input deleted or rotated away while the runner was down (as for the shipper);
  windows still open at SIGTERM are kept in the snapshot and closed by later input, not at stop;
  `--once` closes every window at the end of input but snapshots the state *before* closing, so a
  later run continues the same windows: a window that got new input is emitted again, completed,
  with the same id; one that did not is not emitted again.

Event time: each file is a source with its own watermark (`streams.windowing`); a series' windows
close when the slowest of its active sources passes them, so files read at different speeds (a
backfill of several files) lose nothing. Given the same input files and configuration the aggregates
are the same; event ids depend on when a file was first seen, anomaly and aggregate ids do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from logtide.schemas import (
    Anomaly,
    DeadLetter,
    DeadLetterSource,
    DecodeError,
    Topics,
    WindowAggregate,
    dead_letter,
    encode,
    to_document,
)
from logtide.shippers.checkpoint_store import atomic_write, load_json_or_set_aside

log = logging.getLogger("logtide.run")

OUTPUT_FILES = ("enriched", "aggregates", "anomalies", "deadletter")
SNAPSHOT_VERSION = 1
Record = tuple[bytes | None, bytes]


# --- functional core: one batch in, documents out ------------------------------------------------


@dataclass
class BatchResult:
    """What one acknowledged batch of raw records became."""

    enriched: list[bytes] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    aggregates: list[WindowAggregate] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    flagged: int = 0
    skewed: int = 0  # flagged for clock skew (wall clock, or ahead of their own source)
    kept_out: int = 0  # kept out of the windows: clock skew beyond the wall-clock bounds
    untimed: int = 0  # kept out of the windows: no event time in the line
    late: int = 0  # events with a point behind the watermark by more than the lateness (dead-lettered)
    late_points: int = 0
    refused: int = 0  # points over a cardinality cap (dead-lettered)


def process_batch(
    stateless: Any, stateful: Any, records: Sequence[Record], *, metrics: bool, topic: str, now: datetime
) -> BatchResult:
    """Run raw log (or metric) records through the operators, in order, as the Faust agents do.

    No I/O: the caller writes the result. Late points become dead letters (stage `window`). Source
    watermarks reach the window stage after each record (the Faust path sends them after each batch).
    """
    from logtide.streams.pipeline import SOURCE_SKEW, Sourced, late_dead_letter

    out = BatchResult()
    lateness = stateful.spec.lateness_ms
    now_ms = int(now.timestamp() * 1000)
    src = DeadLetterSource(stage="validate", topic=topic)
    for _key, value in records:
        try:
            if metrics:
                m = stateless.metric(value, now, src)
                if m.dead is not None:
                    out.dead.append(m.dead)
                    continue
                out.skewed += m.skew is not None
                out.untimed += m.untimed
                out.kept_out += not m.untimed and m.skew not in (None, SOURCE_SKEW)
                points, origin = ([m.point] if m.point is not None else []), m.src
            else:
                r = stateless.log(value, now, src)
                if r.dead is not None:
                    out.dead.append(r.dead)
                    continue
                ev = r.event
                out.skewed += r.skew is not None
                out.untimed += r.untimed
                out.kept_out += not r.untimed and r.skew not in (None, SOURCE_SKEW)
                if any(f in ev.logtide.flags for f in ("parse_failure", "invalid_utf8", "ts_unparsed")):
                    out.flagged += 1
                out.enriched.append(encode(ev))
                points, origin = r.points, r.src
        except Exception as exc:  # an operator bug on one odd record must not stop the pipeline
            err = DecodeError("processing_error", f"{type(exc).__name__}: {exc}")
            out.dead.append(dead_letter(value, err, DeadLetterSource(stage="enrich", topic=topic)))
            continue
        any_late = False
        guard = stateful.guard
        for p in points:
            refused = guard.refused_total
            late = stateful.add(p, src=origin, now_ms=now_ms)
            if late is not None:
                any_late = True
                out.late_points += 1
                out.dead.append(late_dead_letter(Sourced(late, origin).to_bytes(), stateful.last_late, lateness))
            elif guard.refused_total > refused:  # over a cardinality cap: kept, with the reason
                out.refused += 1
                err = DecodeError("cardinality_overflow", guard.why(guard.last_refusal, p.metric, 1))
                out.dead.append(dead_letter(Sourced(p, origin).to_bytes(), err, DeadLetterSource(stage="window", topic=topic)))
        out.late += any_late
        for s, wm in stateless.take_marks():
            stateful.mark(s, wm, now_ms)
    report = stateful.late_report(now_ms)
    if report:
        log.warning("%s", report)
    aggs, anomalies = stateful.advance(now_ms)
    out.aggregates.extend(aggs)
    out.anomalies.extend(anomalies)
    return out


def format_anomaly_line(a: Anomaly) -> str:
    """One readable line: when, which series, value vs expected [band], score, severity."""
    when = (
        f"{a.window.start:%Y-%m-%d %H:%M}-{a.window.end:%H:%M}Z"
        if a.window
        else f"{a.timestamp:%Y-%m-%d %H:%M}Z"
    )
    stat = a.labels.get("stat", "value")
    return (
        f"{when} {a.severity.value.upper():8} {a.series.key}  {stat}={a.value:.4g} "
        f"vs expected {a.expected:.4g} [{a.band.lower:.4g}, {a.band.upper:.4g}]  score {a.score:.2f}"
    )


def _content(a: WindowAggregate) -> str:
    return f"{a.stats.count}:{a.stats.sum!r}:{a.stats.min!r}:{a.stats.max!r}"


def operators_fingerprint(streams_cfg: Any) -> str:
    """Identity of the settings the saved window and detector state depends on."""
    from logtide.schemas import stable_id

    parts = (streams_cfg.window, streams_cfg.derive, streams_cfg.detect)
    return stable_id(*(p.model_dump_json() for p in parts), streams_cfg.max_series_per_metric)


# --- adapters: files ------------------------------------------------------------------------------


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line (a crash mid-write); returns the bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                pos = pos - step + i + 1
                break
            pos -= step
        f.truncate(pos)
        return size - pos


class NdjsonWriter:
    """Append-only NDJSON file: one document per line, flushed per batch, fsynced before snapshots."""

    def __init__(self, path: Path) -> None:
        self.path = path
        cut = repair_torn_tail(path)
        if cut:
            log.warning("%s: removed a torn last line (%d bytes) left by a crash", path, cut)
        self._f: IO[bytes] = open(path, "ab")  # noqa: SIM115 - lives as long as the runner
        self.lines = 0

    def write(self, docs: Sequence[bytes]) -> None:
        if docs:
            self._f.write(b"\n".join(docs) + b"\n")
            self.lines += len(docs)

    def flush(self) -> None:
        self._f.flush()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sync()
        self._f.close()


class Outputs:
    """The four NDJSON files, an optional ClickHouse sink, and the anomaly printer."""

    def __init__(
        self,
        data_dir: Path,
        on_anomaly: Callable[[Anomaly], None] | None = None,
        clickhouse: Any = None,
    ) -> None:
        self.files = {name: NdjsonWriter(data_dir / f"{name}.ndjson") for name in OUTPUT_FILES}
        self.on_anomaly = on_anomaly
        self.clickhouse = clickhouse
        self.clickhouse_rejected = 0

    def write(self, r: BatchResult) -> None:
        """Write and flush one batch's documents (before the batch is acknowledged)."""
        f = self.files
        f["enriched"].write(r.enriched)
        f["deadletter"].write([encode(d) for d in r.dead])
        f["aggregates"].write([encode(a) for a in r.aggregates])
        f["anomalies"].write([encode(a) for a in r.anomalies])
        for w in f.values():
            w.flush()
        if self.clickhouse is not None:
            docs = [orjson.loads(b) for b in r.enriched]
            docs += [to_document(x) for x in (*r.dead, *r.aggregates, *r.anomalies)]
            if docs:
                self._clickhouse_dead_letters(docs, self.clickhouse.write(docs) or ())
        if self.on_anomaly is not None:
            for a in r.anomalies:
                self.on_anomaly(a)

    def _clickhouse_dead_letters(self, docs: list[dict[str, Any]], rejected: Any) -> None:
        """Rows the engine refused become dead letters (file and table), counted; never only a log line."""
        letters = []
        for pos, reason in rejected:
            doc = docs[pos]
            if (doc.get("logtide") or {}).get("schema") == "dead_letter":
                log.error("clickhouse refused dead letter %s: %s", doc["event"]["id"], reason)
                continue
            src = DeadLetterSource(stage="sink", topic="clickhouse")
            letters.append(dead_letter(orjson.dumps(doc), DecodeError("target_rejected", reason), src))
        if letters:
            self.clickhouse_rejected += len(letters)
            self.files["deadletter"].write([encode(d) for d in letters])
            self.files["deadletter"].flush()
            self.clickhouse.write([to_document(d) for d in letters])

    def sync(self) -> None:
        for w in self.files.values():
            w.sync()

    def close(self) -> None:
        for w in self.files.values():
            w.close()
        backend_close = getattr(getattr(self.clickhouse, "backend", None), "close", None)
        if backend_close is not None:
            backend_close()  # chdb persists its parts when the session closes


# --- adapters: the shipper's output and the snapshot store ---------------------------------------


class AckQueueOutput:
    """The shipper's `Output` in process: batches go into a bounded queue, `send` returns once the
    consumer has processed and written them (that is the acknowledgement the shipper checkpoints on).

    A full queue makes `send` wait, so the shipper stops reading: the file is the buffer. Sends are
    queued in call order (one lock), so one file's batches are processed in file order.
    """

    def __init__(self, maxsize: int = 16) -> None:
        self.queue: asyncio.Queue[tuple[str, Sequence[Record], asyncio.Future[None]]] = asyncio.Queue(maxsize)
        self._order = asyncio.Lock()
        self.unsettled = 0  # acknowledged batches whose `send` has not returned to the shipper yet

    async def start(self) -> None:
        return None

    async def send(self, topic: str, records: Sequence[Record]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        async with self._order:
            await self.queue.put((topic, records, fut))
        try:
            await fut
        finally:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.unsettled -= 1

    def ack(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            self.unsettled += 1
            fut.set_result(None)

    async def stop(self) -> None:
        return None


def _check_snapshot(doc: Any) -> dict[str, Any]:
    if doc.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"version {doc.get('version')!r}")
    return doc


class SnapshotStore:
    """One file holding the shipper's registry and the operators' state, replaced atomically.

    It stands in for the shipper's `CheckpointStore` (same `load`/`save`): the shipper's own
    checkpoint requests only ask for a snapshot, which the runner takes at a quiet moment.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "snapshot.json"
        self.doc: dict[str, Any] = {}
        self.requested = asyncio.Event()
        self.last_write = 0.0

    def read(self) -> dict[str, Any]:
        doc = load_json_or_set_aside(self.path, "snapshot", _check_snapshot)
        if doc is None:
            return {}
        self.doc = doc
        return doc

    # CheckpointStore interface, called by the shipper
    def load(self) -> dict[str, Any]:
        from logtide.shippers.checkpoint_store import FileState

        return {k: FileState(**v) for k, v in self.doc.get("registry", {}).items()}

    def save(self, states: dict[str, Any]) -> None:
        self.requested.set()

    def write(self, registry: dict[str, Any], series: dict[str, str], extra: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": SNAPSHOT_VERSION,
            "written_at": datetime.now(UTC).isoformat(),
            "registry": {k: asdict(s) for k, s in registry.items()},
            "series": series,
            **extra,
        }
        atomic_write(self.path, orjson.dumps(doc))
        self.last_write = time.time()


# --- the runner -----------------------------------------------------------------------------------


@dataclass
class Summary:
    """Counts of one run (this process only, not earlier runs on the same data directory)."""

    events: int = 0
    flagged: int = 0
    skewed: int = 0
    metric_samples: int = 0
    dead_letters: int = 0
    kept_out: int = 0
    untimed: int = 0
    late: int = 0
    late_points: int = 0
    aggregates: int = 0
    anomalies: int = 0
    snapshots: int = 0
    restored_series: int = 0
    anomaly_list: deque[Anomaly] = field(default_factory=lambda: deque(maxlen=10_000), repr=False)

    def add(self, r: BatchResult, metrics: bool, n: int) -> None:
        if metrics:
            self.metric_samples += n - len(r.dead) + r.late_points + r.refused
        self.events += len(r.enriched)
        self.flagged += r.flagged
        self.skewed += r.skewed
        self.dead_letters += len(r.dead)
        self.kept_out += r.kept_out
        self.untimed += r.untimed
        self.late += r.late
        self.late_points += r.late_points
        self.aggregates += len(r.aggregates)
        self.anomalies += len(r.anomalies)
        self.anomaly_list.extend(r.anomalies)


class DataDirLocked(RuntimeError):
    """Another `logtide run` uses this data directory."""


class EmbeddedRunner:
    """Wires the shipper, the operators and the outputs; `run()` until SIGTERM or end of input."""

    def __init__(
        self,
        cfg: Any,
        data_dir: Path,
        *,
        once: bool = False,
        on_anomaly: Callable[[Anomaly], None] | None = None,
        clickhouse: bool = False,
        queue_batches: int = 16,
        snapshot_interval_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.once = once
        self.on_anomaly = on_anomaly
        self.use_clickhouse = clickhouse
        self.queue_batches = queue_batches
        self.snapshot_interval_s = snapshot_interval_s
        self.summary = Summary()
        self.shipper: Any = None
        self._lock_fd: int | None = None

    def request_stop(self) -> None:
        """Graceful stop (SIGTERM/SIGINT): stop reading, process what was read, snapshot, exit."""
        if self.shipper is not None:
            self.shipper.request_stop()
        else:
            self._early_stop = True

    _early_stop = False

    def _lock(self) -> None:
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(f"{self.data_dir} is in use by another logtide run") from None
        self._lock_fd = fd

    async def run(self) -> Summary:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            return await self._run()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    async def _run(self) -> Summary:
        from logtide.shippers.shipper import Shipper
        from logtide.streams.pipeline import Stateful, Stateless

        cfg = self.cfg
        topics = Topics(cfg.topics.prefix)
        sc = cfg.shipper.model_copy(update={"state_dir": self.data_dir / "state"})
        self.stateless = Stateless(cfg.streams)
        self.stateful = stateful = Stateful(cfg.streams)
        self.store = store = SnapshotStore(self.data_dir / "state")
        doc = store.read()
        fingerprint = operators_fingerprint(cfg.streams)
        if doc.get("series") and doc.get("operators") != fingerprint:
            log.warning(
                "the window, derive or detect settings changed since the last snapshot: open windows and "
                "detectors start afresh (read offsets are kept)"
            )
            doc["series"] = {}
        now_ms = int(time.time() * 1000)
        for key, blob in doc.get("series", {}).items():
            stateful.restore(key, blob.encode(), now_ms)
        # windows the last `--once` closed at its end of input (id -> content): not emitted again unchanged
        self._provisional: dict[str, str] = dict(doc.get("provisional", {})) if doc.get("series") else {}
        self.summary.restored_series = len(doc.get("series", {}))
        self._fingerprint = fingerprint
        stateful.take_dirty()
        self._exports: dict[str, str] = dict(doc.get("series", {}))  # series state as last saved
        self._batches_since_snapshot = 0
        ch = None
        if self.use_clickhouse:
            from logtide.sinks.clickhouse_sink import ChdbBackend, ClickHouseSink

            ch = ClickHouseSink(ChdbBackend(self.data_dir / "clickhouse"))
        self.outputs = Outputs(self.data_dir, self.on_anomaly, ch)
        self.output = output = AckQueueOutput(self.queue_batches)
        self.metrics_topic = cfg.shipper.metrics_topic or topics.metrics_raw
        self.shipper = shipper = Shipper(
            sc, output, log_topic=topics.logs_raw, metrics_topic=self.metrics_topic, once=self.once
        )
        shipper.store = store  # offsets live in our snapshot, saved with the operators' state
        if self._early_stop:
            shipper.request_stop()
        self._resume = asyncio.Event()
        self._resume.set()
        self._closing = False
        consumer = asyncio.create_task(self._consume(), name="embedded-consume")
        snapper = asyncio.create_task(self._snapshot_loop(), name="embedded-snapshot")
        failed: BaseException | None = None
        try:
            runner = asyncio.create_task(shipper.run(), name="shipper")
            done, _ = await asyncio.wait({runner, consumer}, return_when=asyncio.FIRST_COMPLETED)
            if consumer in done and not runner.done():  # the consumer crashed: stop reading
                shipper.request_stop()
                await asyncio.gather(runner, return_exceptions=True)
            failed = consumer.exception() if consumer.done() else None
            if failed is None:
                await runner
                await self.output.queue.join()
        finally:
            self._closing = True
            self.store.requested.set()  # wakes the snapshot loop, which ends
            consumer.cancel()
            await asyncio.gather(snapper, consumer, return_exceptions=True)
        try:
            if failed is not None:
                raise failed
            self._emit(*stateful.advance(int(time.time() * 1000)))
            await self.snapshot()  # before closing windows: a later run continues them
            if self.once:
                aggs, anomalies = stateful.flush()
                self._emit(aggs, anomalies)
                # remember what the end of input closed, so that a run with no new input for these
                # windows does not emit them again (with new input they are emitted again, completed)
                self._provisional = {a.event.id: _content(a) for a in aggs}
                self.store.write(self.shipper.states, self._exports, self._extra())
            self.outputs.sync()
        finally:
            self.outputs.close()
        return self.summary

    def _drop_repeats(self, r: BatchResult) -> None:
        """Leave out windows (and their anomalies) the previous `--once` already emitted unchanged."""
        if not self._provisional or not r.aggregates:
            return
        prov = self._provisional
        same = {(a.series.key, a.window.start) for a in r.aggregates if prov.pop(a.event.id, None) == _content(a)}
        if same:
            r.aggregates = [a for a in r.aggregates if (a.series.key, a.window.start) not in same]
            r.anomalies = [a for a in r.anomalies if a.window is None or (a.series.key, a.window.start) not in same]

    def _extra(self) -> dict[str, Any]:
        return {"operators": self._fingerprint, "stream_time_ms": self.stateful.stream_time_ms,
                "provisional": self._provisional}

    def _emit(self, aggs: list[WindowAggregate], anomalies: list[Anomaly]) -> None:
        r = BatchResult(aggregates=aggs, anomalies=anomalies)
        self._drop_repeats(r)
        self.outputs.write(r)
        self.summary.add(r, False, 0)

    async def _consume(self) -> None:
        q = self.output.queue
        while True:
            topic, records, fut = await q.get()
            await self._resume.wait()  # a snapshot is being taken: hold the batch until it is done
            try:
                if fut.done():  # the sender gave up (cancelled at shutdown): not acknowledged
                    continue
                metrics = topic == self.metrics_topic
                # process, write, flush and acknowledge with no await in between: a snapshot only
                # ever sees whole batches
                r = process_batch(self.stateless, self.stateful, records, metrics=metrics, topic=topic,
                                  now=datetime.now(UTC))  # fmt: skip
                self._drop_repeats(r)
                self.outputs.write(r)
                self.summary.add(r, metrics, len(records))
                self._batches_since_snapshot += 1
                self.output.ack(fut)
            finally:
                q.task_done()
            # `get` on a non-empty queue does not yield: let the shipper (acknowledgements, reading)
            # and the snapshot task run between batches
            await asyncio.sleep(0)

    async def _snapshot_loop(self) -> None:
        # no cancellation and no `wait_for` here: on Python 3.11 `wait_for` can swallow a cancellation
        # that races with the event, which left this task running for ever; a flag ends the loop
        while not self._closing:
            waiter = asyncio.ensure_future(self.store.requested.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.snapshot_interval_s)
            finally:
                waiter.cancel()
            if self._closing:
                return
            # wall-clock tick: windows held by idle sources or by the discovery of new ones close
            # even when no input arrives (advance is synchronous: it never sees half a batch)
            aggs, anomalies = self.stateful.advance(int(time.time() * 1000))
            if aggs or anomalies:
                self._emit(aggs, anomalies)
                self._batches_since_snapshot += 1
            if not self.store.requested.is_set() and not self._batches_since_snapshot:
                continue  # nothing new: no write
            self.store.requested.clear()
            try:
                await self.snapshot()
            except OSError as exc:
                log.error("snapshot failed: %s (will retry)", exc)

    async def snapshot(self) -> None:
        """Pause processing, let acknowledged batches reach the shipper's offsets, then save both."""
        self._resume.clear()
        try:
            # no batch is processed while paused, so no new acknowledgement can arrive; each round
            # lets the senders woken by earlier ones return to the shipper and advance its offsets
            for _ in range(1000):
                await asyncio.sleep(0)
                if self.output.unsettled <= 0:
                    break
            for _ in range(3):
                await asyncio.sleep(0)
            self.outputs.sync()
            sf = self.stateful
            exports = self._exports
            for k in sf.take_dirty():  # only the series that changed are exported again
                exports[k] = sf.export(k).decode()
            self.store.write(self.shipper.states, exports, self._extra())
            self._batches_since_snapshot = 0
            self.summary.snapshots += 1
        finally:
            self._resume.set()
