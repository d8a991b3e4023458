"""Loss-freedom under SIGKILL in a loop, and across a broker stop/start in the middle of shipping."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.shippers.conftest import kafka_output, running_shipper, shipper_config, wait_acked
from tests.shippers.helpers import consume, create_topic

pytestmark = pytest.mark.integration


class Writer(threading.Thread):
    """Appends numbered lines steadily; rotates by rename now and then, like logrotate."""

    def __init__(self, directory: Path, rotate_every: int = 0) -> None:
        super().__init__(daemon=True)
        self.dir = directory
        self.stop_flag = threading.Event()
        self.written: list[str] = []
        self.rotate_every = rotate_every

    def run(self) -> None:
        path = self.dir / "app.log"
        f = open(path, "a", encoding="utf-8")  # noqa: SIM115
        n = 0
        rotations = 0
        while not self.stop_flag.is_set():
            for _ in range(50):
                line = f"line {n:07d} " + "p" * (n % 97)
                f.write(line + "\n")
                self.written.append(line)
                n += 1
            f.flush()
            if self.rotate_every and n % self.rotate_every == 0:
                rotations += 1
                os.rename(path, self.dir / f"app.log.{rotations}")
                f.close()
                f = open(path, "a", encoding="utf-8")  # noqa: SIM115
            self.stop_flag.wait(0.01)
        f.close()


def _ship_cmd(directory: Path, bootstrap: str, topic: str, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "logtide.cli", "ship", "--path", str(directory / "app.log*"),
            "--bootstrap", bootstrap, "--topic", topic, "--state-dir", str(state), "--from-beginning", *extra]  # fmt: skip


async def test_kill_minus_9_in_a_loop_loses_nothing(tmp_path: Path, kafka_bootstrap: str, topic: str) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    state = tmp_path / "state"
    writer = Writer(d, rotate_every=5000)
    writer.start()
    rng = random.Random(7)
    try:
        for run in range(7):
            with open(tmp_path / f"ship-{run}.err", "wb") as err:
                proc = subprocess.Popen(_ship_cmd(d, kafka_bootstrap, topic, state),
                                        stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    finally:
        writer.stop_flag.set()
        writer.join()
    # a last run reads everything to the end and exits
    res = subprocess.run(_ship_cmd(d, kafka_bootstrap, topic, state, "--once"), capture_output=True, text=True, check=False,
                         timeout=180)  # fmt: skip
    assert res.returncode == 0, res.stderr
    written = writer.written
    assert len(written) > 1000
    events = await consume(kafka_bootstrap, topic, len(written), timeout_s=120)
    got = Counter(e["message"] for e in events)
    missing = [w for w in written if w not in got]
    if missing:  # enough to diagnose a failure seen once
        logs = "".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("ship-*.err")))
        files = {p.name: p.stat().st_size for p in d.iterdir()}
        registry = (state / "registry.json").read_text()
        pytest.fail(f"{len(missing)} of {len(written)} lines lost, e.g. {missing[:3]}\nfiles={files}\n"
                    f"registry={registry}\nfinal run:\n{res.stderr[-3000:]}\nkilled runs:\n{logs}")  # fmt: skip
    assert set(got) <= set(written)
    duplicates = sum(got.values()) - len(got)
    # what was in flight or acknowledged after the last checkpoint at each kill is sent again: with
    # the id it had the first time, so the sinks keep one copy
    ids: dict[str, set[str]] = {}
    for e in events:
        ids.setdefault(e["message"], set()).add(e["event"]["id"])
    renamed = {m: i for m, i in ids.items() if len(i) > 1}
    assert not renamed, (
        f"{len(renamed)} lines re-sent under another event id, e.g. {list(renamed.items())[:2]}"
    )
    print(f"kill -9 x7: {len(written)} lines written, all delivered, {duplicates} duplicates, same ids")


@pytest.fixture
def private_broker(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str
):  # type: ignore[no-untyped-def]
    """A broker of our own (other port and data dir), so stopping it disturbs no other test."""
    from logtide.services import ensure_up, stop

    monkeypatch.setenv("LOGTIDE_STATE", str(tmp_path_factory.mktemp("private-kafka")))
    monkeypatch.setenv("LOGTIDE_KAFKA_PORT", str(19092 + os.getpid() % 500 * 2))
    addr = ensure_up(elasticsearch=False)["kafka"]
    try:
        yield addr, lambda: stop(elasticsearch=False), lambda: ensure_up(elasticsearch=False)
    finally:
        stop(elasticsearch=False)


async def test_broker_stopped_and_restarted_mid_stream(tmp_path: Path, private_broker) -> None:  # type: ignore[no-untyped-def]
    bootstrap, stop_broker, start_broker = private_broker
    topic = "restart-test"
    await create_topic(bootstrap, topic, 2)
    d = tmp_path / "logs"
    d.mkdir()
    log = d / "app.log"
    written: list[str] = []

    def write(n: int, tag: str) -> None:
        with open(log, "a", encoding="utf-8") as f:
            for i in range(n):
                written.append(f"{tag} {i}")
                f.write(f"{tag} {i}\n")

    cfg = shipper_config(
        tmp_path, [str(log)], retry_max_s=1.0, max_inflight_bytes=2 << 20, read_chunk_bytes=65536
    )
    # a short request timeout makes batches expire while the broker is away: our retry path, not aiokafka's
    output = kafka_output(bootstrap, request_timeout_ms=2000, linger_ms=5)
    async with running_shipper(cfg, bootstrap, topic, output=output) as shipper:
        write(20_000, "before")
        await asyncio.sleep(0.05)  # let shipping get under way, then pull the broker out from under it
        await asyncio.to_thread(stop_broker)
        write(20_000, "during")
        await asyncio.sleep(3)
        # reading paused: the file is the buffer, in-flight bytes stay within the budget
        # (the budget is exceeded by at most one chunk whose lines expanded more than estimated)
        assert shipper.ctx is not None and shipper.ctx.budget.used <= 2 * cfg.max_inflight_bytes
        await asyncio.to_thread(start_broker)
        write(5_000, "after")
        assert await wait_acked(shipper, log, 180)
    events = await consume(bootstrap, topic, len(written), timeout_s=120)
    got = Counter(e["message"] for e in events)
    missing = [w for w in written if w not in got]
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:3]}"
    retries = sum(s.value for m in shipper.metrics.registry.collect() for s in m.samples
                  if m.name == "logtide_shipper_send_retries" and s.name.endswith("_total"))  # fmt: skip
    assert retries > 0, "the sends never failed: the outage was not hit"
    # only batches in flight when the broker went away can arrive twice: at most the in-flight budget
    # (exceeded by at most one chunk, hence 2x) divided by the smallest event
    duplicates = sum(got.values()) - len(got)
    smallest = min(len(orjson.dumps({k: v for k, v in e.items() if not k.startswith("_")})) for e in events)
    assert duplicates <= 2 * cfg.max_inflight_bytes // smallest, (duplicates, smallest)
    print(f"broker restart: {len(written)} lines, {duplicates} duplicates, {retries:.0f} retries")
