"""One file: read, split, group, parse, send, and advance the checkpoint only past acknowledged data.

The file is the buffer. A harvester reads a chunk only after it has reserved room in the shared
in-flight budget, so when the output is slow or down reading simply stops and memory stays bounded.
Each chunk's records are sent as one call to the output; acknowledgements may complete out of
order, but the checkpoint offset only moves over a contiguous prefix of acknowledged chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
from logtide.shippers.checkpoint_store import FileState
from logtide.shippers.config import LogInputConfig, ShipperConfig
from logtide.shippers.events import IdHasher, LogEventBuilder, now_iso
from logtide.shippers.line_reader import LineReader, decode_line
from logtide.shippers.metrics import ShipperMetrics
from logtide.shippers.multiline import MultilineAggregator, MultilineEvent
from logtide.shippers.output import Output, Record
from logtide.shippers.reconcile import at_end_of_data, check_chunk, head_hash, new_fp_id

log = logging.getLogger(__name__)


class InflightBudget:
    """Bytes awaiting acknowledgement across all files; `acquire` waits when the budget is spent."""

    def __init__(self, limit: int, gauge: Any = None) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()
        self._gauge = gauge

    async def acquire(self, n: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n
        if self._gauge is not None:
            self._gauge.set(self.used)

    def overcommit(self, n: int) -> None:
        """Account bytes already in memory (never waits: waiting here could wait on ourselves)."""
        self.used += n
        if self._gauge is not None:
            self._gauge.set(self.used)

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()
        if self._gauge is not None:
            self._gauge.set(self.used)


@dataclass
class InputRuntime:
    """An input's configuration with its compiled parts."""

    index: int
    cfg: LogInputConfig
    builder: LogEventBuilder
    topic: str


@dataclass
class HarvestContext:
    """What all harvesters of one shipper share."""

    cfg: ShipperConfig
    output: Output
    metrics: ShipperMetrics
    budget: InflightBudget
    host: dict[str, Any]
    host_name: str
    open_slots: asyncio.Semaphore
    mark_dirty: Callable[[], None]
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    on_truncate: Callable[[FileState, int], None] | None = None
    persist: Callable[[], Awaitable[None]] | None = None


_TOO_LARGE = {"MessageSizeTooLargeError", "RecordTooLarge", "RecordTooLargeError", "RecordListTooLargeError"}


def shrink_record(value: bytes, keep: int = 64 << 10) -> bytes:
    """The event with its message (and original) cut to `keep` characters and a `truncated` flag."""
    try:
        ev = orjson.loads(value)
        for holder, key in ((ev, "message"), (ev.get("event", {}), "original")):
            if isinstance(holder.get(key), str):
                holder[key] = holder[key][:keep]
        flags = ev.setdefault("logtide", {}).setdefault("flags", [])
        if "truncated" not in flags:
            flags.append("truncated")
        ev.pop("attributes", None)
        return orjson.dumps(ev)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return value[:keep]


async def send_with_retry(ctx: HarvestContext, topic: str, records: list[Record], input_name: str) -> bool:
    """Send until acknowledged (exponential backoff with full jitter); False only if stopped for good."""
    delay = ctx.cfg.retry_initial_s
    attempt = 0
    while True:
        try:
            await ctx.output.send(topic, records)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt += 1
            ctx.metrics.send_errors.labels(input_name, type(exc).__name__).inc()
            if type(exc).__name__ in _TOO_LARGE:
                # Retrying the same bytes cannot succeed: send halves, and shrink a lone oversized record.
                if len(records) > 1:
                    half = len(records) // 2
                    await send_with_retry(ctx, topic, records[:half], input_name)
                    return await send_with_retry(ctx, topic, records[half:], input_name)
                log.error(
                    "a record of %d bytes is too large for %s; shipping it truncated",
                    len(records[0][1]),
                    topic,
                )
                records = [(records[0][0], shrink_record(records[0][1]))]
                continue
            if attempt == 1 or attempt % 10 == 0:
                log.warning("send to %s failed (attempt %d): %r; retrying", topic, attempt, exc)
            ctx.metrics.retries.labels(input_name).inc()
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, ctx.cfg.retry_max_s)


class Harvester:
    """Tails one file (one inode) from `state.offset` until told to stop, or until it is done with it."""

    def __init__(self, ctx: HarvestContext, inp: InputRuntime, state: FileState, once: bool = False) -> None:
        self.ctx = ctx
        self.inp = inp
        self.state = state
        self.once = once
        self.wake = asyncio.Event()
        self.orphaned = False  # renamed away from every pattern, or deleted
        self.stop_requested = False  # this harvester only (configuration reload)
        self.done = False
        self.finished_cleanly = False
        self.task: asyncio.Task[None] | None = None
        cfg = ctx.cfg
        self.reader = LineReader(cfg.max_line_bytes, cfg.long_lines)
        self.reader.reset(state.offset)  # an early flush must not move the checkpoint back to 0
        self.multiline = MultilineAggregator(inp.cfg.multiline) if inp.cfg.multiline else None
        self.pending: deque[list[Any]] = deque()  # [end_offset, acked]
        self.sends: set[asyncio.Task[None]] = set()
        self.read_offset = state.offset
        self.path_block = {"path": state.path}
        self.key = f"{ctx.host_name}/{state.key}".encode()
        self.ids = IdHasher(ctx.host_name, state.fp_id)
        self.last_data = time.monotonic()
        self.mtime = datetime.now(UTC)  # the file's modification time (year: file_mtime), from fstat
        self.expansion = 2.5  # encoded bytes per raw byte, learnt as lines go by
        self._m_lines = ctx.metrics.lines_read.labels(inp.cfg.name)
        self._m_bytes = ctx.metrics.bytes_read.labels(inp.cfg.name)
        self._m_sent = ctx.metrics.events_sent.labels(inp.cfg.name)
        self._m_sent_bytes = ctx.metrics.bytes_sent.labels(inp.cfg.name)
        self._m_batches = ctx.metrics.batches.labels(inp.cfg.name)
        self._m_parse = ctx.metrics.parse_failures.labels(inp.cfg.name)
        self._m_behind = ctx.metrics.bytes_behind.labels(inp.cfg.name, state.path)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"harvest:{self.state.path}")
        return self.task

    def stop(self) -> None:
        """Stop reading; sends under way complete (bounded by shutdown_timeout_s); partial multiline
        events are not flushed (the checkpoint stays before them, they are read again)."""
        self.stop_requested = True
        self.wake.set()

    def set_path(self, path: str) -> None:
        if path != self.state.path:
            with contextlib.suppress(KeyError):
                self.ctx.metrics.bytes_behind.remove(self.inp.cfg.name, self.state.path)
            self._m_behind = self.ctx.metrics.bytes_behind.labels(self.inp.cfg.name, path)
            self.state.path = path
            self.path_block = {"path": path}
            self.ctx.mark_dirty()

    async def run(self) -> None:
        ctx = self.ctx
        async with ctx.open_slots:
            if ctx.stopping.is_set():
                self.done = True
                return
            try:
                fd = os.open(self.state.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                ctx.metrics.file_errors.labels(self.inp.cfg.name).inc()
                log.warning("cannot open %s: %s (will retry on the next scan)", self.state.path, exc.strerror)
                self.done = True
                return
            ctx.metrics.open_files.inc()
            try:
                st = os.fstat(fd)
                self.mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                if (st.st_dev, st.st_ino) != (self.state.dev, self.state.ino):
                    log.info("%s was replaced before it could be opened; rescanning", self.state.path)
                    return
                await self._loop(fd)
            except OSError as exc:
                ctx.metrics.file_errors.labels(self.inp.cfg.name).inc()
                log.warning("error reading %s: %s (will retry)", self.state.path, exc)
                await self._drain_sends()
            finally:
                os.close(fd)
                ctx.metrics.open_files.dec()
                with contextlib.suppress(KeyError):
                    ctx.metrics.bytes_behind.remove(self.inp.cfg.name, self.state.path)
                self.done = True

    async def _loop(self, fd: int) -> None:
        ctx = self.ctx
        cfg = ctx.cfg
        while not ctx.stopping.is_set() and not self.stop_requested:
            # Read as much as, once encoded, fits a third of the budget: a few chunks in flight keep
            # the partition busy; short lines (which expand most) are read in smaller chunks.
            chunk = max(4096, min(cfg.read_chunk_bytes, int(ctx.budget.limit / 3 / self.expansion)))
            reserve = int(chunk * self.expansion) + 4096
            await ctx.budget.acquire(reserve)
            try:
                data = os.pread(fd, chunk, self.read_offset)
            except BaseException:
                await ctx.budget.release(reserve)
                raise
            head = os.pread(fd, cfg.fingerprint_bytes, 0) if data else b""
            ok, grown = check_chunk(self.read_offset, data, head, self.state.head_len, self.state.head_hash)
            if data and ok:
                if grown:
                    # the longer head is on disk before lines it covers are sent (see check_chunk)
                    self.state.head_len, self.state.head_hash = grown, head_hash(head[:grown])
                    await self._persist()
                self.last_data = time.monotonic()
                self._process(data, reserve)
                await asyncio.sleep(0)
                continue
            await ctx.budget.release(reserve)
            # At the end of what is there, or the file no longer starts as it did (truncated and
            # rewritten past our offset: what was just read is not the content we were reading).
            # The decision is reconcile.at_end_of_data (pure).
            st = os.fstat(fd)
            self.mtime = datetime.fromtimestamp(st.st_mtime, UTC)
            if not data:
                head = os.pread(fd, cfg.fingerprint_bytes, 0)
            self._m_behind.set(max(0, st.st_size - self.read_offset))
            ml = self.multiline
            end = at_end_of_data(
                read_offset=self.read_offset, size=st.st_size, nlink=st.st_nlink, head=head,
                stored_head_len=self.state.head_len, stored_head_hash=self.state.head_hash,
                orphaned=self.orphaned, once=self.once, idle=time.monotonic() - self.last_data,
                close_inactive_s=cfg.close_inactive_s, close_removed_after_s=cfg.close_removed_after_s,
                multiline_pending=ml is not None and ml.current is not None,
                multiline_flush_s=ml.cfg.flush_timeout_s if ml is not None else 0.0,
            )  # fmt: skip
            if end.kind == "truncated":
                self._truncated(head, st.st_size)
                # the new fingerprint is on disk before a line of the new content is sent:
                # a crash keeps the ids of what is re-sent
                await self._persist()
                continue
            if end.grow_head:
                self.state.head_len, self.state.head_hash = len(head), head_hash(head)
                ctx.mark_dirty()
            self.orphaned = end.orphaned
            if end.kind in ("finish", "close"):
                self._flush_multiline()
                await self._drain_sends()
                self.finished_cleanly = end.kind == "finish"
                log.info("closed %s at offset %d (%s)", self.state.path, self.read_offset,
                         "removed" if self.orphaned else "read to the end" if self.once else "inactive")  # fmt: skip
                return
            if end.kind == "flush_multiline":
                self._flush_multiline()
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), end.timeout)
        # stopping: do not flush partial multiline events; the checkpoint stays before them
        await self._drain_sends(ctx.cfg.shutdown_timeout_s)

    async def _persist(self) -> None:
        if self.ctx.persist is not None:
            try:
                await self.ctx.persist()
            except OSError as exc:
                log.error("checkpoint failed: %s", exc)
        else:
            self.ctx.mark_dirty()

    # -- the hot path ----------------------------------------------------------------------------

    def _process(self, data: bytes, reserve: int) -> None:
        offset = self.read_offset
        self.read_offset = offset + len(data)
        lines = self.reader.feed(data, offset)
        self._m_bytes.inc(len(data))
        self._m_lines.inc(len(lines))
        records: list[Record] = []
        if self.multiline is None:
            self._build_lines(lines, records)
            end = self.reader.consumed_offset
        else:
            ml = self.multiline
            for start, stop, raw, truncated in lines:
                text, flags = decode_line(raw, truncated)
                done = ml.push(text, start, stop, flags)
                if done is not None:
                    self._build_event(done, records)
            end = ml.pending_start if ml.current is not None else self.reader.consumed_offset
        nbytes = sum(map(len, map(itemgetter(1), records)))
        if records:
            self.expansion = max(1.0, 0.5 * self.expansion + 0.5 * nbytes / len(data))
        self._submit(records, end, reserve, nbytes)

    def _build_lines(self, lines: list[Any], records: list[Record]) -> None:
        builder = self.inp.builder
        if builder.year_from_mtime:
            builder.ts.reference = self.mtime  # builders are shared: set for this file's lines
        if builder.plain:
            self._count_flags(0, builder.encode_plain(lines, self.key, self.ids, self.path_block, records))
            return
        key = self.key
        ids = self.ids
        build = self.inp.builder.build
        path_block = self.path_block
        ingested = now_iso()
        failures = 0
        flagged: list[str] = []
        append = records.append
        for start, _stop, raw, truncated in lines:
            if not raw:
                continue  # empty lines carry nothing (as in Filebeat); their bytes still count as read
            text, flags = decode_line(raw, truncated)
            value, failed = build(text, start, flags, path_block, ids(start), ingested)
            if failed:
                failures += 1
            if flags:
                flagged.extend(flags)
            append((key, value))
        self._count_flags(failures, flagged)

    def _build_event(self, ev: MultilineEvent, records: list[Record]) -> None:
        if self.inp.builder.year_from_mtime:
            self.inp.builder.ts.reference = self.mtime
        flags = sorted(ev.flags)
        text = ev.text
        if not text and len(ev.lines) <= 1:
            return
        value, failed = self.inp.builder.build(
            text, ev.start, flags, self.path_block, self.ids(ev.start), now_iso()
        )
        self._count_flags(1 if failed else 0, flags)
        records.append((self.key, value))

    def _count_flags(self, failures: int, flags: list[str]) -> None:
        if failures:
            self._m_parse.inc(failures)
        if flags:
            counter = self.ctx.metrics.flagged
            for flag in set(flags):
                counter.labels(self.inp.cfg.name, flag).inc(flags.count(flag))

    def _flush_multiline(self) -> None:
        """Emit what is buffered (quiet file, end of --once, file going away)."""
        records: list[Record] = []
        ml = self.multiline
        if ml is not None and ml.current is not None:
            ev = ml.flush()
            if ev is not None:
                self._build_event(ev, records)
        if self.once or self.orphaned:
            # the file will not grow any more for us: a last line without a newline is still a line
            tail = self.reader.flush()
            if tail is not None:
                self._build_lines([tail], records)
        if records or ml is not None:
            self._submit(records, self.reader.consumed_offset, 0)

    # -- acknowledgements and checkpoints -------------------------------------------------------

    def _submit(self, records: list[Record], end: int, reserve: int, nbytes: int = -1) -> None:
        entry = [end, False]
        self.pending.append(entry)
        if not records:
            if reserve:
                asyncio.get_running_loop().create_task(self.ctx.budget.release(reserve))
            entry[1] = True
            self._advance()
            return
        task = asyncio.get_running_loop().create_task(self._send(records, entry, reserve, nbytes))
        self.sends.add(task)
        task.add_done_callback(self.sends.discard)

    async def _send(self, records: list[Record], entry: list[Any], reserve: int, nbytes: int) -> None:
        if nbytes < 0:
            nbytes = sum(map(len, map(itemgetter(1), records)))
        if nbytes > reserve:
            # short lines expand more than the estimate: hold the real size, so the budget stays true
            self.ctx.budget.overcommit(nbytes - reserve)
            reserve = nbytes
        try:
            await send_with_retry(self.ctx, self.inp.topic, records, self.inp.cfg.name)
        finally:
            if reserve:
                await self.ctx.budget.release(reserve)
        self._m_sent.inc(len(records))
        self._m_sent_bytes.inc(nbytes)
        self._m_batches.inc()
        entry[1] = True
        self._advance()

    def _advance(self) -> None:
        pending = self.pending
        moved = False
        while pending and pending[0][1]:
            self.state.offset = pending.popleft()[0]
            moved = True
        if moved:
            self.state.updated = time.time()
            self.ctx.mark_dirty()

    async def _drain_sends(self, timeout: float | None = None) -> None:
        if self.sends:
            _done, still = await asyncio.wait(set(self.sends), timeout=timeout)
            for t in still:
                t.cancel()

    def _truncated(self, head: bytes, size: int) -> None:
        log.info("%s was truncated (%d -> %d bytes): reading it again from the start", self.state.path,
                 self.read_offset, size)  # fmt: skip
        self.ctx.metrics.rotations.labels(self.inp.cfg.name, "truncated").inc()
        if self.ctx.on_truncate is not None:
            # the acknowledged offset: a copy resumed there cannot skip what was still in flight
            self.ctx.on_truncate(self.state, self.state.offset)
        # Acks still to come belong to the old content: they must not move the new checkpoint.
        self.pending.clear()
        self.read_offset = 0
        self.reader.reset(0)
        if self.multiline is not None:
            self.multiline.reset()
        self.state.head_len, self.state.head_hash = len(head), head_hash(head)
        self.state.fp_id = new_fp_id(self.state.dev, self.state.ino, time.time(), self.state.fp_id)
        self.ids = IdHasher(self.ctx.host_name, self.state.fp_id)
        self.state.offset = 0
        self.ctx.mark_dirty()
