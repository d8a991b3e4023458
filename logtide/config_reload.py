"""Configuration reload for the long-running commands (`ship`, `streams`, `alerts`): one way for all.

SIGHUP, or a change of the file with `--watch-config`, reads and validates the whole file again. An
invalid file is refused with its key paths and the running configuration is kept. A valid one is
compared with the running one key by key (`changed_keys`): each process declares which keys it can
apply while running (`split_changes`); every other changed key is named in one log line as needing a
restart and keeps its running value (`keep_running`), so what runs is always a validated
configuration and never half of one.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from logtide.config import Config, ConfigError, load_config

M = TypeVar("M", bound=BaseModel)

REFUSED = "configuration reload refused, the running configuration is kept"
NEEDS_RESTART = "needs a restart"


def changed_keys(old: BaseModel, new: BaseModel, prefix: str = "") -> list[str]:
    """Dotted key paths whose values differ, descending into sub-sections (a list or a mapping is
    one value: a changed rule list is `streams.detect.rules`)."""
    out: list[str] = []
    for name in type(new).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        path = f"{prefix}{name}"
        if isinstance(a, BaseModel) and isinstance(b, BaseModel) and type(a) is type(b):
            out += changed_keys(a, b, path + ".")
        elif a != b:
            out.append(path)
    return out


def _matches(key: str, patterns: Iterable[str]) -> bool:
    """`key` is one of the patterns (globs) or lies under one (`alerts.route` covers `alerts.route.x`)."""
    return any(fnmatch.fnmatchcase(key, p) or key.startswith(p + ".") for p in patterns)


def split_changes(
    old: BaseModel, new: BaseModel, live: Iterable[str], sections: Iterable[str] | None = None
) -> tuple[list[str], list[str]]:
    """(changed keys applied live, changed keys that need a restart). Keys outside `sections` (the
    top-level sections this process reads) belong to other processes and are in neither list."""
    live, sections = tuple(live), tuple(sections) if sections is not None else None
    applied, restart = [], []
    for key in changed_keys(old, new):
        if sections is not None and not _matches(key, sections):
            continue
        (applied if _matches(key, live) else restart).append(key)
    return applied, restart


def _set(model: M, path: list[str], value: Any) -> M:
    head, rest = path[0], path[1:]
    inner = getattr(model, head)
    return model.model_copy(update={head: _set(inner, rest, value) if rest else value})


def keep_running(old: M, new: M, keys: Iterable[str]) -> M:
    """`new` with each of `keys` (dotted paths from `changed_keys`) set back to its value in `old`."""
    out = new
    for key in keys:
        parts = key.split(".")
        node: Any = old
        for p in parts:
            node = getattr(node, p)
        out = _set(out, parts, node)
    return out


def log_restart_needed(log: logging.Logger, keys: list[str]) -> None:
    """One line per key that changed but cannot change while running (it keeps its running value)."""
    for key in keys:
        log.warning("configuration reload: %s changed and %s; keeping the running value", key, NEEDS_RESTART)


def apply_log_level(cfg: Config) -> None:
    """`logging.level` applies to logtide's own loggers at once (libraries stay as configured at start)."""
    logging.getLogger("logtide").setLevel(cfg.logging.level)


class Reloader:
    """Reads the file again on demand (`load`: validates, raises ConfigError) and hands what it read to
    `apply`; one reload at a time, triggers while one runs coalesce into one more. `load` None: the
    process has no file to read again (said so on SIGHUP)."""

    def __init__(
        self,
        load: Callable[[], Any] | None,
        apply: Callable[[Any], Awaitable[None]],
        log: logging.Logger,
    ) -> None:
        self.load, self.apply, self.log = load, apply, log
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.done = 0  # reloads finished (applied or refused): tests and logs count them

    def trigger(self) -> None:
        """Schedule a reload on the running loop (signal handlers and file watchers call this)."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> bool:
        """Validate the file again and apply it; False when it was refused (the running one is kept)."""
        try:
            if self.load is None:
                self.log.warning("SIGHUP: no --config file to reload")
                return False
            try:
                cfg = self.load()
            except ConfigError as exc:
                self.log.error("%s:\n%s", REFUSED, exc)
                return False
            try:
                await self.apply(cfg)
            except Exception:
                self.log.exception("configuration reload failed; the running configuration is kept")
                return False
            return True
        finally:
            self.done += 1


def file_state(path: str | Path) -> tuple[int, int, int, int] | None:
    """What tells one version of a file from the next (following symlinks, so a Kubernetes ConfigMap's
    swapped `..data` link counts): inode, device, size, modification time; None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns


async def watch_file(path: str | Path, on_change: Callable[[], None], *, since: tuple[int, int, int, int] | None = None,
                     interval: float = 1.0, settle: float = 0.3) -> None:
    """Call `on_change` when the file differs from `since` (its state when the configuration was read),
    then from the version last reported; a change is reported once it has held still for `settle`
    seconds (an editor's write in several steps is one change). One `stat` a second: no race with a
    watcher that is not set up yet, and no file-system event API to depend on."""
    last = since if since is not None else file_state(path)
    while True:
        await asyncio.sleep(interval)
        now = file_state(path)
        if now == last or now is None:
            continue
        await asyncio.sleep(settle)
        if file_state(path) != now:
            continue  # still being written: look again at the next round
        last = now
        on_change()


def file_loader(path: str | Path | None) -> Callable[[], Config] | None:
    """What `Reloader` reads for a `--config FILE` (None without one)."""
    if path is None:
        return None
    return lambda: load_config(path)


def install(reloader: Reloader, watch: str | Path | None = None,
            since: tuple[int, int, int, int] | None = None) -> asyncio.Task[None] | None:
    """SIGHUP triggers a reload; with `watch`, so does a change of that file (after `since`, its state
    when it was read at start; default: now). Returns the watcher task (cancel it at shutdown), if any.
    Call from the running loop."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloader.trigger)
    if watch is None:
        return None
    return loop.create_task(watch_file(watch, reloader.trigger, since=since if since is not None else file_state(watch)))
