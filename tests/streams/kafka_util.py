"""Helpers for streams integration tests: topics, producing, reading a topic to a condition, and
worker processes."""

from __future__ import annotations

import asyncio
import os
import re
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
    """Wait until `group` has committed every record of `topic` (its work is durable)."""
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
        while True:
            ends = await c.end_offsets(tps)
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
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

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

    def settled(self) -> bool:
        """Its latest assignment is recovered and its streams seeked (Faust logs 'Worker ready')."""
        text = self.log.read_text(errors="replace")
        i = text.rfind("newly assigned partitions")
        return i >= 0 and "Worker ready" in text[i:]

    def assigned(self, topic: str) -> set[int] | None:
        """Partitions of `topic` in this worker's latest assignment (from its log), None before one."""
        text = self.log.read_text(errors="replace")
        i = text.rfind("newly assigned partitions")
        if i < 0:
            return None
        block = text[i : text.find("for group", i)]
        # aiokafka's own line: {TopicPartition(topic='t', partition=0), ...} (plain logging format)
        found = re.findall(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)", block)
        if found:
            return {int(p) for t, p in found if t == topic}
        for line in block.splitlines():  # Faust's log formatter renders the set as a table
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 2 and cells[0] == topic:
                out: set[int] = set()
                for cell in cells[1].strip("{}").split(","):
                    part = cell.strip()
                    if "-" in part:
                        lo, hi = part.split("-")
                        out.update(range(int(lo), int(hi) + 1))
                    elif part:
                        out.add(int(part))
                return out
        return set()


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
