"""Model-based test in the spirit of Vector's file-watcher experiments.

Hypothesis drives random sequences of write, rename rotation, copytruncate, truncation, deletion,
graceful restart and crash (no final checkpoint) against a running shipper and the real Kafka.
The model records every line written; at the end every line must have arrived (by content) and
nothing else may have. Truncation and deletion first wait until the shipper has caught up: a line
truncated away before any shipper could read it is lost by every shipper, and not what we test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logtide.shippers.reconcile import same_file

from tests.shippers.conftest import kafka_output, shipper_config
from tests.shippers.helpers import consume, wait_for

pytestmark = pytest.mark.integration

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 400)),
        st.tuples(st.just("rename"), st.just(0)),
        st.tuples(st.just("copytruncate"), st.just(0)),
        st.tuples(st.just("truncate"), st.just(0)),
        st.tuples(st.just("delete"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
        st.tuples(st.just("crash"), st.just(0)),
    ),
    min_size=3,
    max_size=14,
)


class Harness:
    def __init__(self, bootstrap: str, root: Path, topic: str) -> None:
        self.bootstrap = bootstrap
        self.root = root
        self.dir = root / "logs"
        self.dir.mkdir()
        self.topic = topic
        self.log = self.dir / "app.log"
        self.written: list[str] = []
        self.n = 0
        self.rotations = 0
        self.shipper = None
        self.task: asyncio.Task[None] | None = None
        self.cfg = shipper_config(root, [str(self.dir / "app.log*")], close_removed_after_s=0.2)

    async def start(self) -> None:
        from logtide.shippers.shipper import Shipper

        self.shipper = Shipper(self.cfg, kafka_output(self.bootstrap), log_topic=self.topic)
        self.task = asyncio.create_task(self.shipper.run())
        await asyncio.wait([self.task, asyncio.create_task(self.shipper.started.wait())],
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip

    async def stop(self) -> None:
        assert self.shipper is not None and self.task is not None
        self.shipper.request_stop()
        await asyncio.wait_for(self.task, 60)

    async def crash(self) -> None:
        """As a SIGKILL would: no final checkpoint, in-flight sends abandoned."""
        sh, task = self.shipper, self.task
        assert sh is not None and task is not None
        sh.store.save = lambda states: None  # type: ignore[method-assign]
        for h in list(sh.active.values()):
            for t in list(h.sends):
                t.cancel()
            if h.task is not None:
                h.task.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def sync(self) -> None:
        """Wait until the registry acknowledges every byte of every file."""
        sh = self.shipper
        assert sh is not None

        def caught_up() -> bool:
            for p in self.dir.iterdir():
                try:
                    st_ = os.stat(p)
                except FileNotFoundError:
                    continue
                state = sh.states.get(f"{st_.st_dev}:{st_.st_ino}")
                if state is None or state.offset != st_.st_size:
                    return False
                with open(p, "rb") as f:  # same size is not enough: truncated and rewritten?
                    if not same_file(state.head_len, state.head_hash, f.read(state.head_len)):
                        return False
            return True

        assert await wait_for(caught_up, 60), "shipper did not catch up"

    def write(self, count: int) -> None:
        with open(self.log, "a", encoding="utf-8") as f:
            for _ in range(count):
                line = f"{self.topic} {self.n:06d}"
                self.n += 1
                self.written.append(line)
                f.write(line + "\n")

    async def apply(self, op: str, arg: int) -> None:
        if op == "write":
            self.write(arg)
        elif op == "rename" and self.log.exists():
            self.rotations += 1
            os.rename(self.log, self.dir / f"app.log.{self.rotations}")
        elif op == "copytruncate" and self.log.exists():
            self.rotations += 1
            shutil.copyfile(self.log, self.dir / f"app.log.{self.rotations}")
            os.truncate(self.log, 0)
        elif op == "truncate" and self.log.exists():
            await self.sync()
            os.truncate(self.log, 0)
        elif op == "delete" and self.log.exists():
            await self.sync()
            os.unlink(self.log)
        elif op == "restart":
            await self.stop()
            await self.start()
        elif op == "crash":
            await self.crash()
            await self.start()
        await asyncio.sleep(0.02)


@settings(max_examples=int(os.environ.get("SHIP_MODEL_EXAMPLES", "20")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(ops=OPS)
def test_model_random_rotations_and_restarts(kafka_bootstrap: str, ops: list[tuple[str, int]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="ship-model-"))
    topic = f"ship-model-{uuid.uuid4().hex[:10]}"

    async def scenario() -> tuple[list[str], Counter[str]]:
        h = Harness(kafka_bootstrap, root, topic)
        await h.start()
        for op, arg in ops:
            await h.apply(op, arg)
        h.write(1)  # at least one line, so the topic exists
        await h.sync()
        await h.stop()
        events = await consume(kafka_bootstrap, topic, len(h.written), timeout_s=60, idle_s=0.5)
        return h.written, Counter(e["message"] for e in events)

    try:
        written, got = asyncio.run(scenario())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    missing = [w for w in written if w not in got]
    assert not missing, f"ops={ops}: {len(missing)} of {len(written)} lines lost, e.g. {missing[:3]}"
    phantom = set(got) - set(written)
    assert not phantom, f"ops={ops}: lines never written: {sorted(phantom)[:3]}"
