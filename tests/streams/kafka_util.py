"""Helpers for streams integration tests: topics, producing, reading a topic to a condition, and
worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml
from logtide.schemas import Topics

ROOT = Path(__file__).resolve().parents[2]


async def create_topics(bootstrap: str, topics: Topics, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics.all()])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    try:
        futs = [await p.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


class Feeder:
    """Produces records in the background, a chunk at a time with a pause between chunks: load that
    keeps arriving while a test changes the group (`finish` sends what is left at once)."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]],
                 chunk: int = 300, pause: float = 0.2) -> None:
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.chunk, self.pause = chunk, pause
        self.sent = 0
        self._rush = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, max_batch_size=1 << 20)
        await p.start()
        try:
            while self.sent < len(self.records):
                n = len(self.records) - self.sent if self._rush.is_set() else self.chunk
                part = self.records[self.sent:self.sent + n]
                await asyncio.gather(*[await p.send(self.topic, value=v, key=k) for k, v in part])
                self.sent += len(part)
                if not self._rush.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._rush.wait(), self.pause)
        finally:
            await p.stop()

    async def finish(self) -> None:
        """Send the rest now and wait until every record is acknowledged."""
        self._rush.set()
        if self._task is not None:
            await self._task

    def check(self) -> None:
        """Raise when the feeding task failed."""
        if self._task is not None and self._task.done() and self._task.exception() is not None:
            raise RuntimeError(f"feeding {self.topic} failed") from self._task.exception()


async def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 120.0,
    check: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """Every record of `topic` from the beginning (as JSON), until `done(records)` or the timeout."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await c.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while not done(out):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met after {timeout}s with {len(out)} records")
            if check is not None:
                check()
            batch = await c.getmany(timeout_ms=500)
            for recs in batch.values():
                out.extend(orjson.loads(r.value) for r in recs)
    finally:
        await c.stop()
    return out


async def committed_all(
    bootstrap: str, group: str, topic: str, timeout: float = 120.0, check: Callable[[], None] | None = None
) -> None:
    """Wait until `group` has committed every record `topic` holds when called (its work is durable).

    The end offsets are taken once: the worker appends a wall-clock tick to every points partition each
    second, so a moving end would be reached only when a commit happens to land between two ticks."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await c.start()
    try:
        from aiokafka import TopicPartition

        desc = await admin.describe_topics([topic])
        parts = [p["partition"] for p in desc[0]["partitions"]]
        assert parts, f"{topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in parts]
        deadline = time.monotonic() + timeout
        ends = await c.end_offsets(tps)
        while True:
            offs = await admin.list_consumer_group_offsets(group)
            if all(tp in offs and offs[tp].offset >= ends[tp] for tp in tps if ends[tp] > 0):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} has not committed all of {topic}")
            if check is not None:
                check()
            await asyncio.sleep(0.5)
    finally:
        await c.stop()
        await admin.close()


def write_config(path: Path, bootstrap: str, prefix: str, streams: dict[str, Any]) -> Path:
    doc = {
        "kafka": {"bootstrap_servers": [bootstrap]},
        "topics": {"prefix": prefix},
        "logging": {"level": "INFO"},
        "streams": streams,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


class Worker:
    """One `logtide streams` worker in its own process (own state directory)."""

    def __init__(self, config: Path, state_dir: Path, log: Path) -> None:
        self.log = log
        self._fh = log.open("ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/streams/worker_main.py"), str(config), str(state_dir)],
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ROOT),
            start_new_session=True,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig != signal.SIGKILL:
                self.proc.send_signal(signal.SIGCONT)  # a paused worker handles SIGTERM once it runs again
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the process freezes (no heartbeats, no commits) but keeps its sockets and state."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: the frozen process carries on from where it stopped, unaware of the time that passed."""
        self.proc.send_signal(signal.SIGCONT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """Raise with the log's tail when the worker died unexpectedly."""
        if self.proc.poll() is not None and not getattr(self, "_stopped", False):
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _lines(self, marker: str) -> list[tuple[int, str]]:
        text = self.log.read_text(errors="replace")
        out, i = [], text.find(marker)
        while i >= 0:
            j = text.find("\n", i)
            out.append((i, text[i : j if j >= 0 else len(text)]))
            i = text.find(marker, i + 1)
        return out

    def settled(self) -> bool:
        """Its latest Faust assignment is recovered ('worker ready' after it) and its raw reader has an
        assignment too (from the worker's own log lines, see `describe_assignment`)."""
        assigned = self._lines("assigned (faust group")
        ready = self._lines("worker ready (faust group")
        return bool(assigned) and bool(ready) and ready[-1][0] > assigned[-1][0] and bool(
            self._lines("assigned (raw group"))

    def assigned(self, topic: str) -> set[int] | None:
        """Partitions of `topic` in this worker's latest assignment (from its log), None before one."""
        lines = self._lines("assigned (raw group" if topic.endswith(".raw") else "assigned (faust group")
        if not lines:
            return None
        for cell in lines[-1][1].split(": ", 1)[-1].split():
            name, _, parts = cell.partition("=")
            if name == topic:
                return {int(x) for x in parts.strip("[]").split(",") if x}
        return set()


class Fleet:
    """The workers of one test, each started as `name` on the state directory `state` (a restarted worker
    reuses its directory); `check` raises when one died unexpectedly, `stop_all` ends the survivors."""

    def __init__(self, config: Path, tmp: Path) -> None:
        self.config, self.tmp = config, tmp
        self.workers: list[Worker] = []

    def start(self, state: str) -> Worker:
        w = Worker(self.config, self.tmp / f"state-{state}", self.tmp / f"{state}-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    def check(self) -> None:
        for w in self.workers:
            w.check()

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()

    def count_in_logs(self, text: str) -> int:
        return sum(w.log.read_text(errors="replace").count(text) for w in self.workers)


async def wait_for(
    cond: Callable[[], bool], what: str, timeout: float = 120.0, check: Callable[[], None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        if check is not None:
            check()
        await asyncio.sleep(0.5)
