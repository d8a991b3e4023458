"""Wiring: discovery, harvesters, the registry, metric inputs and shutdown, around one `Output`.

Nothing here knows Kafka: the caller passes an `Output` (Kafka in `logtide ship`, a queue in the
embedded runner). The registry only ever holds acknowledged offsets, so a crash at any point resumes
without loss; SIGTERM stops reading, waits (bounded) for acknowledgements, checkpoints and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

from logtide.shippers.checkpoint_store import CheckpointStore, FileState
from logtide.shippers.config import ShipperConfig
from logtide.shippers.events import LogEventBuilder, host_block
from logtide.shippers.file_watcher import Found, scan, watch_roots
from logtide.shippers.fingerprint import file_key, head_hash, same_file
from logtide.shippers.harvester import HarvestContext, Harvester, InflightBudget, InputRuntime, new_fp_id
from logtide.shippers.line_reader import looks_binary
from logtide.shippers.metrics import ShipperMetrics
from logtide.shippers.output import Output

log = logging.getLogger(__name__)
DEFAULT_LOG_TOPIC = "logtide.logs.raw"
DEFAULT_METRICS_TOPIC = "logtide.metrics.raw"
_TRUNCATION_MEMORY_S = 600.0


def local_host(name: str | None = None) -> dict[str, Any]:
    """Host metadata added to every event: name and the non-loopback addresses."""
    hostname = name or socket.gethostname()
    block = host_block(hostname)
    try:
        import psutil

        ips = sorted(
            a.address.split("%")[0]
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6) and not a.address.startswith(("127.", "::1"))
        )
        if ips:
            block["ip"] = ips
    except Exception:  # host metadata is a nicety, never a reason not to ship
        pass
    return block


class Shipper:
    def __init__(
        self,
        cfg: ShipperConfig,
        output: Output,
        *,
        log_topic: str | None = None,
        metrics_topic: str | None = None,
        once: bool = False,
        metrics: ShipperMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.output = output
        self.once = once
        self.metrics = metrics or ShipperMetrics()
        self.log_topic = cfg.topic or log_topic or DEFAULT_LOG_TOPIC
        self.metrics_topic = cfg.metrics_topic or metrics_topic or DEFAULT_METRICS_TOPIC
        self.host = local_host(cfg.host_name)
        self.host_name: str = self.host["name"]
        self.store = CheckpointStore(cfg.state_dir)
        self.states: dict[str, FileState] = {}
        self.active: dict[str, Harvester] = {}
        self.inputs = [
            InputRuntime(i, c, LogEventBuilder(c, self.host), c.topic or self.log_topic)
            for i, c in enumerate(cfg.inputs)
        ]
        self._dirty = False
        self._stop = asyncio.Event()
        self._first_scan = True
        self._warned: set[tuple[str, str]] = set()
        self._truncations: dict[str, tuple[int, float]] = {}  # old head hash -> (offset, when)
        self._reconcile_lock = asyncio.Lock()
        self.ctx: HarvestContext | None = None
        self.started = asyncio.Event()

    # -- control -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful stop (SIGTERM): stop reading, flush, checkpoint."""
        self._stop.set()

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _on_truncate(self, state: FileState, old_offset: int) -> None:
        if state.head_len >= self.cfg.fingerprint_bytes:
            self._truncations[state.head_hash] = (old_offset, time.monotonic())

    def checkpoint(self) -> None:
        """Write the registry now (acknowledged offsets only)."""
        self._dirty = False
        self.store.save(self.states)
        self.metrics.checkpointed()

    async def run(self) -> None:
        cfg = self.cfg
        self.states = self.store.load()
        if cfg.metrics_listen:
            addr = self.metrics.serve(cfg.metrics_listen)
            log.info("shipper metrics on http://%s:%d/metrics", *addr)
        self.ctx = HarvestContext(
            cfg=cfg,
            output=self.output,
            metrics=self.metrics,
            budget=InflightBudget(cfg.max_inflight_bytes, self.metrics.inflight_bytes),
            host=self.host,
            host_name=self.host_name,
            open_slots=asyncio.Semaphore(cfg.max_open_files),
            mark_dirty=self._mark_dirty,
            on_truncate=self._on_truncate,
        )
        await self._start_output()
        if self._stop.is_set():
            return
        background: list[asyncio.Task[Any]] = []
        try:
            await self.reconcile()
            self.started.set()
            if self.once:
                await self._run_once()
                return
            background.append(asyncio.create_task(self._registrar(), name="registrar"))
            background.append(asyncio.create_task(self._rescan_loop(), name="rescan"))
            if self.inputs:
                background.append(asyncio.create_task(self._watch_supervisor(), name="watch"))
            background.extend(self._metric_tasks())
            await self._stop.wait()
        finally:
            await self._shutdown(background)

    async def _start_output(self) -> None:
        delay = self.cfg.retry_initial_s
        while not self._stop.is_set():
            try:
                await self.output.start()
                return
            except Exception as exc:
                log.warning("output not available (%r); retrying in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, self.cfg.retry_max_s)

    async def _run_once(self) -> None:
        """--once: every file found at start read to its end, every record acknowledged."""
        while self.active:
            tasks = [h.task for h in self.active.values() if h.task is not None]
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self._stop.is_set():
                break
            if all(t.done() for t in tasks):
                break
        await asyncio.sleep(0)

    async def _shutdown(self, background: list[asyncio.Task[Any]]) -> None:
        ctx = self.ctx
        assert ctx is not None
        ctx.stopping.set()
        for h in self.active.values():
            h.wake.set()
        tasks = [h.task for h in self.active.values() if h.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.cfg.shutdown_timeout_s)
            for t in pending:
                t.cancel()
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        try:
            self.checkpoint()
        except OSError as exc:
            log.error("final checkpoint failed: %s", exc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.output.stop(), 5)  # everything acknowledged is checkpointed already
        self.metrics.close()

    # -- discovery -------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Match the files on disk with harvesters and registry states (start-up, events, rescans)."""
        async with self._reconcile_lock:
            self._reconcile()

    def _reconcile(self) -> None:
        assert self.ctx is not None
        initial = self._first_scan
        self._first_scan = False
        found, skipped = scan([i.cfg for i in self.inputs])
        for path, idx, reason in skipped:
            self._skip_once(path, self.inputs[idx].cfg.name, reason)
        by_key: dict[str, Found] = {}
        for f in found.values():
            by_key.setdefault(file_key(f.st.st_dev, f.st.st_ino), f)
        now = time.monotonic()
        self._truncations = {h: v for h, v in self._truncations.items() if now - v[1] < _TRUNCATION_MEMORY_S}

        # 1. running harvesters: follow renames, notice files gone from every pattern
        for key, h in list(self.active.items()):
            if h.done:
                del self.active[key]
                continue
            f = by_key.get(key)
            if f is None:
                if not h.orphaned:
                    h.orphaned = True
                    self.metrics.rotations.labels(h.inp.cfg.name, "gone").inc()
                h.wake.set()
            else:
                h.set_path(f.path)
                if f.st.st_size != h.read_offset:
                    h.wake.set()
        # 2. files without a harvester
        new_states = False
        for f in sorted(by_key.values(), key=lambda x: x.path):
            key = file_key(f.st.st_dev, f.st.st_ino)
            if key in self.active:
                continue
            inp = self.inputs[f.input_index]
            state = self.states.get(key)
            size = f.st.st_size
            unchanged = state is not None and state.path == f.path and size == state.offset
            if unchanged and f.st.st_mtime <= state.updated:  # type: ignore[union-attr]
                continue  # nothing new (the common case on a rescan)
            head = self._head(f.path)
            if head is None:
                continue
            if state is not None:
                state.path = f.path
                if size < state.offset or not same_file(state.head_len, state.head_hash, head):
                    # Truncated, rewritten, or the inode reused by a new file: in every case the bytes
                    # there are not the ones we read, so all of them are new (whatever start_position).
                    log.info("%s: content differs from what was read; reading it from the start", f.path)
                    self.metrics.rotations.labels(inp.cfg.name, "truncated").inc()
                    self._on_truncate(state, state.offset)
                    state.offset, state.head_len, state.head_hash = 0, len(head), head_hash(head)
                    state.fp_id = new_fp_id(state.dev, state.ino)
                    new_states = True
                elif size == state.offset:
                    state.updated = time.time()  # checked: unchanged, no need to look again
                    continue
            else:
                if looks_binary(head):
                    self._skip_once(f.path, inp.cfg.name, "binary")
                    continue
                older = inp.cfg.ignore_older_s
                if older is not None and time.time() - f.st.st_mtime > older:
                    self._skip_once(f.path, inp.cfg.name, "ignore_older")
                    continue
                offset = self._copy_offset(head, key, size)
                if offset is None:
                    offset = size if (initial and inp.cfg.start_position == "end") else 0
                state = FileState(
                    key=key, path=f.path, dev=f.st.st_dev, ino=f.st.st_ino, head_len=len(head),
                    head_hash=head_hash(head), fp_id=new_fp_id(f.st.st_dev, f.st.st_ino), offset=offset,
                    input=inp.cfg.name,
                )  # fmt: skip
                self.states[key] = state
                new_states = True
                if offset == size and self.once:
                    continue
            h = Harvester(self.ctx, inp, state, once=self.once)
            self.active[key] = h
            h.start()
        # 3. forget files that are gone (and whose harvester has finished)
        for key in [k for k in self.states if k not in by_key and k not in self.active]:
            del self.states[key]
            new_states = True
        if new_states:
            # persist new fingerprints at once: a crash before the first ack keeps their event ids
            try:
                self.checkpoint()
            except OSError as exc:
                log.error("checkpoint failed: %s", exc)

    def _copy_offset(self, head: bytes, key: str, size: int) -> int | None:
        """copytruncate: a new file whose first bytes are those of a file we had read, since truncated."""
        if len(head) < self.cfg.fingerprint_bytes:
            return None
        hh = head_hash(head)
        hit = self._truncations.get(hh)
        if hit is not None:
            log.info("new file with the content of a truncated one (copytruncate): resuming at %d", hit[0])
            return min(hit[0], size)
        for other in self.states.values():
            if other.key == key or other.head_hash != hh or other.head_len != len(head):
                continue
            try:
                st = os.stat(other.path)
                intact = (st.st_dev, st.st_ino) == (other.dev, other.ino) and st.st_size >= other.offset
            except OSError:
                intact = False
            if not intact:
                return min(other.offset, size)
        return None

    def _head(self, path: str) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._warn_once(path, f"cannot open: {exc.strerror} (will retry)")
            return None
        try:
            return os.pread(fd, self.cfg.fingerprint_bytes, 0)
        except OSError as exc:
            self._warn_once(path, f"cannot read: {exc.strerror} (will retry)")
            return None
        finally:
            os.close(fd)

    def _warn_once(self, path: str, what: str) -> None:
        if (path, what) not in self._warned:
            self._warned.add((path, what))
            log.warning("%s: %s", path, what)

    def _skip_once(self, path: str, input_name: str, reason: str) -> None:
        if (path, reason) not in self._warned:
            self._warned.add((path, reason))
            self.metrics.skipped_files.labels(input_name, reason).inc()
            if reason == "binary":
                log.warning("%s looks binary; skipping it", path)
            else:
                log.info("%s skipped (%s)", path, reason)

    # -- loops -----------------------------------------------------------------------------------

    async def _registrar(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.checkpoint_interval_s)
            if self._dirty:
                try:
                    self.checkpoint()
                except OSError as exc:
                    log.error("checkpoint failed: %s (will retry)", exc)

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.rescan_interval_s)
            try:
                await self.reconcile()
            except Exception:
                log.exception("rescan failed")

    async def _watch_supervisor(self) -> None:
        """Runs the watcher; restarts it when the directories to watch change (one was created)."""
        while True:
            roots = watch_roots([i.cfg for i in self.inputs])
            task = asyncio.create_task(self._watch_loop(roots))
            try:
                while not task.done():
                    await asyncio.wait([task], timeout=self.cfg.rescan_interval_s)
                    if watch_roots([i.cfg for i in self.inputs]) != roots:
                        log.info("directories to watch changed; restarting the watcher")
                        break
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if task.done() and not task.cancelled() and task.exception() is None:
                await asyncio.sleep(self.cfg.rescan_interval_s)  # the watcher gave up: the rescan carries on

    async def _watch_loop(self, roots: list[tuple[str, bool]]) -> None:
        from watchfiles import Change, awatch

        recursive = any(r for _, r in roots)
        paths = [p for p, _ in roots]
        stop = asyncio.Event()
        try:
            async for changes in awatch(
                *paths,
                watch_filter=None,
                debounce=self.cfg.watch_debounce_ms,
                step=50,
                recursive=recursive,
                stop_event=stop,
                rust_timeout=60_000,
                yield_on_timeout=False,
            ):
                by_path = {h.state.path: h for h in self.active.values()}
                rescan = False
                for change, path in changes:
                    h = by_path.get(path)
                    if h is not None and change == Change.modified:
                        h.wake.set()
                    else:
                        rescan = True
                if rescan:
                    await self.reconcile()
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception:
            log.exception("file watching failed; relying on the periodic rescan")

    def _metric_tasks(self) -> list[asyncio.Task[Any]]:
        tasks = []
        if self.cfg.host_metrics.enabled:
            from logtide.shippers.host_metrics import host_metrics_loop

            tasks.append(asyncio.create_task(host_metrics_loop(self), name="host-metrics"))
        if self.cfg.prometheus_scrapes:
            from logtide.shippers.prometheus_scrape import scrape_loop

            for sc in self.cfg.prometheus_scrapes:
                tasks.append(asyncio.create_task(scrape_loop(self, sc), name=f"scrape:{sc.url}"))
        return tasks
