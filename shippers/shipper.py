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
from dataclasses import replace
from typing import Any

from logtide.shippers.checkpoint_store import CheckpointStore, FileState
from logtide.shippers.config import ShipperConfig
from logtide.shippers.events import LogEventBuilder, host_block
from logtide.shippers.file_watcher import scan, watch_roots
from logtide.shippers.harvester import HarvestContext, Harvester, InflightBudget, InputRuntime
from logtide.shippers.metrics import ShipperMetrics
from logtide.shippers.output import Output
from logtide.shippers.reconcile import (
    Action,
    Follow,
    Forget,
    InputRules,
    Orphan,
    Persist,
    Release,
    Rules,
    Running,
    Skip,
    Start,
    Store,
    Truncations,
    Wake,
    heads_needed,
    plan,
)

log = logging.getLogger(__name__)
DEFAULT_LOG_TOPIC = "logtide.logs.raw"
DEFAULT_METRICS_TOPIC = "logtide.metrics.raw"


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
        self._truncations: Truncations = {}  # head hash of content read, since truncated -> (offset, when)
        self._reconcile_lock = asyncio.Lock()
        self._persist_lock = asyncio.Lock()
        self._persist_wanted = 0  # persist requests made / covered by a finished write
        self._persist_done = 0
        self._rules = self._make_rules()
        self._initial_inputs: frozenset[int] = frozenset()  # inputs added by a reload: their first scan
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
            self._truncations[state.head_hash] = (old_offset, time.time())

    def checkpoint(self) -> None:
        """Write the registry now (acknowledged offsets only), blocking: for the final checkpoint."""
        self._dirty = False
        self.store.save(self.states)
        self.metrics.checkpointed()

    async def persist(self) -> None:
        """Write the registry now, off the event loop: a copy of the states taken here is written
        by a thread (temp file, fsync, rename, fsync dir); one write at a time, in order. Callers
        that arrive while a write is under way share the next one."""
        self._persist_wanted += 1
        wanted = self._persist_wanted
        async with self._persist_lock:
            if self._persist_done >= wanted:
                return  # a write that started after our request covered it
            target = self._persist_wanted
            self._dirty = False
            snapshot = {k: replace(s) for k, s in self.states.items()}
            if isinstance(self.store, CheckpointStore):
                await asyncio.to_thread(self.store.save, snapshot)
            else:  # an embedding's store (logtide run) that only takes note
                self.store.save(snapshot)
            self._persist_done = target
            self.metrics.checkpointed()

    async def run(self) -> None:
        cfg = self.cfg
        if isinstance(self.store, CheckpointStore):
            self.store.check_writable()
        self.states = self.store.load()
        if self.once:
            for inp in cfg.inputs:
                if inp.start_position == "end":
                    log.warning(
                        "input %s: --once with start_position: end reads nothing from files without a "
                        "checkpoint; use --from-beginning or start_position: beginning", inp.name
                    )  # fmt: skip
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
            persist=self.persist,
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
            background.append(asyncio.create_task(self._totals_loop(), name="totals"))
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

    async def reload(self, cfg: ShipperConfig) -> list[str]:
        """Apply a new configuration while running (SIGHUP, --watch-config).

        Inputs added start (their `start_position` applies as at start-up); inputs removed or changed
        stop after their sends are acknowledged and the registry is written; changed ones start again
        at their checkpoints with the new settings. Settings other than the inputs and the
        per-file timings keep their running values: returned (and logged) as needing a restart.
        """
        live_keys = {"inputs", "close_inactive_s", "close_removed_after_s", "rescan_interval_s", "checkpoint_interval_s",
                     "shutdown_timeout_s", "retry_initial_s", "retry_max_s", "max_line_bytes", "long_lines",
                     "read_chunk_bytes", "watch_debounce_ms"}  # fmt: skip
        old_dump, new_dump = self.cfg.model_dump(), cfg.model_dump()
        restart = sorted(k for k in new_dump if k not in live_keys and new_dump[k] != old_dump[k])
        for key in restart:  # the wording of logtide.config_reload, which the other processes use
            log.warning("configuration reload: shipper.%s changed and needs a restart; keeping the running value", key)
        cfg = cfg.model_copy(update={k: getattr(self.cfg, k) for k in restart})
        async with self._reconcile_lock:
            old = {i.cfg.name: i.cfg for i in self.inputs}
            new = {c.name: c for c in cfg.inputs}
            stale = {name for name, c in old.items() if new.get(name) != c}
            added = [name for name in new if name not in old]
            stopping = [h for h in self.active.values() if h.inp.cfg.name in stale]
            for h in stopping:
                h.stop()
            tasks = [h.task for h in stopping if h.task is not None]
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=self.cfg.shutdown_timeout_s)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            self.active = {k: h for k, h in self.active.items() if h not in stopping}
            self.cfg = cfg
            assert self.ctx is not None
            self.ctx.cfg = cfg
            self.inputs = [
                InputRuntime(i, c, LogEventBuilder(c, self.host), c.topic or self.log_topic)
                for i, c in enumerate(cfg.inputs)
            ]
            self._rules = self._make_rules()
            self._initial_inputs = frozenset(i for i, c in enumerate(cfg.inputs) if c.name in added)
            await self.persist()
        log.info("configuration reloaded: %d input(s) added, %d stopped or restarted, %d unchanged",
                 len(added), len(stale), len(new) - len(added) - len(stale & set(new)))  # fmt: skip
        await self.reconcile()
        return restart

    def _make_rules(self) -> Rules:
        return Rules(
            fingerprint_bytes=self.cfg.fingerprint_bytes,
            inputs=tuple(InputRules(c.name, c.start_position, c.ignore_older_s) for c in self.cfg.inputs),
            once=self.once,
        )

    async def reconcile(self) -> None:
        """Match the files on disk with harvesters and registry states (start-up, events, rescans).

        The decisions are `reconcile.plan` (pure); here only the I/O: the scan and the reads of
        file heads run in a thread (never on the event loop), then the actions are applied.
        """
        async with self._reconcile_lock:
            assert self.ctx is not None
            initial: bool | frozenset[int] = self._first_scan or self._initial_inputs
            self._first_scan = False
            self._initial_inputs = frozenset()
            # running harvesters as they are before the scan: one that finishes during it is
            # released on the next pass, so its final offset is never compared with a stale size
            running = {
                k: Running(h.state.path, h.read_offset, h.done, h.orphaned) for k, h in self.active.items()
            }
            seen, skipped = await asyncio.to_thread(scan, [i.cfg for i in self.inputs])
            if initial:
                matched = {f.input_index for f in seen} | {idx for _p, idx, _r in skipped}
                for inp in self.inputs:
                    if inp.index not in matched and (initial is True or inp.index in initial):
                        log.warning(
                            "input %s: no file matches %s (yet): check the paths (absolute, shell globs) and "
                            "permissions; files that appear later are picked up", inp.cfg.name, inp.cfg.paths
                        )  # fmt: skip
            for path, idx, reason in skipped:
                self._skip_once(path, self.inputs[idx].cfg.name, reason)
            need = heads_needed(seen, self.states, running)
            heads = await asyncio.to_thread(self._heads, need) if need else {}
            result = plan(seen, heads, self.states, running, truncations=self._truncations, rules=self._rules,
                          initial=initial, now=time.time())  # fmt: skip
            self._truncations = result.truncations
            await self._apply(result.actions)

    async def _apply(self, actions: list[Action]) -> None:
        assert self.ctx is not None
        starts: list[Start] = []
        persist = False
        for a in actions:
            if isinstance(a, Store):
                self.states[a.state.key] = a.state
                name = a.state.input
                if a.reason == "replaced":
                    log.info(
                        "%s: content differs from what was read; reading it from the start", a.state.path
                    )
                    self.metrics.rotations.labels(name, "truncated").inc()
                elif a.reason == "copy":
                    log.info("%s: content of a truncated file (copytruncate): resuming at %d", a.state.path,
                             a.state.offset)  # fmt: skip
                    self.metrics.rotations.labels(name, "copytruncate").inc()
            elif isinstance(a, Start):
                starts.append(a)
            elif isinstance(a, Wake):
                self.active[a.key].wake.set()
            elif isinstance(a, Follow):
                h = self.active[a.key]
                if h.state.path != a.path:
                    log.info("%s renamed to %s; following it", h.state.path, a.path)
                    self.metrics.rotations.labels(h.inp.cfg.name, "renamed").inc()
                h.set_path(a.path)
            elif isinstance(a, Orphan):
                h = self.active[a.key]
                h.orphaned = True
                self.metrics.rotations.labels(h.inp.cfg.name, "gone").inc()
                h.wake.set()
            elif isinstance(a, Release):
                h = self.active.get(a.key)
                if h is not None and h.done:
                    del self.active[a.key]
            elif isinstance(a, Forget):
                self.states.pop(a.key, None)
            elif isinstance(a, Skip):
                self._skip_once(a.path, self.inputs[a.input_index].cfg.name, a.reason)
            elif isinstance(a, Persist):
                persist = True
        if persist:
            # new fingerprints are on disk before any of their lines is sent: a crash keeps their ids
            try:
                await self.persist()
            except OSError as exc:
                log.error("checkpoint failed: %s", exc)
        for a in starts:
            h = Harvester(self.ctx, self.inputs[a.input_index], self.states[a.key], once=self.once)
            self.active[a.key] = h
            h.start()
            log.info("reading %s from offset %d", h.state.path, h.state.offset)

    def _heads(self, paths: list[str]) -> dict[str, bytes | None]:
        return {p: self._head(p) for p in paths}

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
                    await self.persist()
                except OSError as exc:
                    log.error("checkpoint failed: %s (will retry)", exc)

    async def _totals_loop(self, every_s: float = 60.0) -> None:
        """One INFO line a minute with what moved (nothing when nothing did)."""
        last = self.metrics.totals()
        while True:
            await asyncio.sleep(every_s)
            now = self.metrics.totals()
            delta = {k: now[k] - last.get(k, 0) for k in now}
            last = now
            if any(delta.values()):
                log.info("last %.0fs: %d lines read, %d events sent (%d bytes), %d send retries, %d files open",
                         every_s, delta["lines"], delta["events"], delta["bytes"], delta["retries"],
                         len([h for h in self.active.values() if not h.done]))  # fmt: skip

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
        chatter = logging.getLogger("watchfiles")
        if chatter.level == logging.NOTSET:  # "N changes detected" on every batch: DEBUG, not INFO
            chatter.setLevel(logging.WARNING)
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
