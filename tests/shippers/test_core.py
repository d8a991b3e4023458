"""The shipper core over in-process outputs (no broker): the Output protocol, retries, selection rules."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from logtide.shippers.config import LogInputConfig, ShipperConfig
from logtide.shippers.output import ListOutput, Output, QueueOutput
from logtide.shippers.shipper import Shipper

from tests.shippers.helpers import validate_event


def _cfg(tmp_path: Path, **inp: object) -> ShipperConfig:
    return ShipperConfig(
        inputs=[LogInputConfig(paths=[str(tmp_path / "*.log")], start_position="beginning", **inp)],  # type: ignore[arg-type]
        state_dir=tmp_path / "state",
        retry_initial_s=0.01,
        host_name="h",
    )


async def test_outputs_satisfy_the_protocol() -> None:
    assert isinstance(ListOutput(), Output) and isinstance(QueueOutput(), Output)


async def test_retries_until_acknowledged_then_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("".join(f"a {i}\n" for i in range(100)))
    out = ListOutput()
    out.fail_next = 3  # the first three sends fail: the same records are sent again
    shipper = Shipper(_cfg(tmp_path), out, once=True, log_topic="t")
    await shipper.run()
    assert [validate_event(v).message for _t, _k, v in out.records] == [f"a {i}" for i in range(100)]
    retries = shipper.metrics.retries.labels(str(tmp_path / "*.log"))._value.get()
    assert retries == 3
    (state,) = shipper.store.load().values()
    assert state.offset == (tmp_path / "a.log").stat().st_size


async def test_excludes_ignore_older_and_compressed(tmp_path: Path) -> None:
    for name in ("keep.log", "skip.log", "old.log"):
        (tmp_path / name).write_text(f"{name}\n")
    (tmp_path / "x.log.gz").write_bytes(b"\x1f\x8b\x08\x00")
    long_ago = time.time() - 7200
    os.utime(tmp_path / "old.log", (long_ago, long_ago))
    out = ListOutput()
    await Shipper(
        _cfg(tmp_path, exclude=["skip.*"], ignore_older_s=3600), out, once=True, log_topic="t"
    ).run()
    assert [validate_event(v).message for _t, _k, v in out.records] == ["keep.log"]


async def test_max_open_files_caps_concurrent_harvesters(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"f{i}.log").write_text("".join(f"f{i} {j}\n" for j in range(20)))
    out = ListOutput()
    cfg = _cfg(tmp_path).model_copy(update={"max_open_files": 3})
    shipper = Shipper(cfg, out, once=True, log_topic="t")
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, int(shipper.metrics.open_files._value.get()))
            await asyncio.sleep(0)

    w = asyncio.create_task(watch())
    await shipper.run()
    w.cancel()
    assert len(out.records) == 600 and 1 <= peak <= 3


async def test_queue_output_feeds_an_in_process_consumer(tmp_path: Path) -> None:
    (tmp_path / "q.log").write_text("one\ntwo\n")
    out = QueueOutput(maxsize=10)
    await Shipper(_cfg(tmp_path), out, once=True, log_topic="logs").run()
    got = [out.queue.get_nowait() for _ in range(out.queue.qsize())]
    assert [(t, validate_event(v).message) for t, _k, v in got] == [("logs", "one"), ("logs", "two")]
    assert {k for _t, k, _v in got} == {got[0][1]}  # one file, one key


def test_watch_roots(tmp_path: Path) -> None:
    from logtide.shippers.file_watcher import watch_roots

    (tmp_path / "a").mkdir()
    roots = watch_roots(
        [
            LogInputConfig(paths=[str(tmp_path / "a" / "*.log")]),
            LogInputConfig(paths=[str(tmp_path / "*" / "deep" / "x.log")]),
            LogInputConfig(paths=[str(tmp_path / "missing" / "sub" / "*.log")]),
        ]
    )
    # the wildcard directory makes tmp_path recursive; a missing directory is watched through its
    # nearest existing ancestor, never recursively on that account
    assert roots == [(str(tmp_path), True), (str(tmp_path / "a"), False)]
    roots = watch_roots([LogInputConfig(paths=[str(tmp_path / "missing" / "sub" / "*.log")])])
    assert roots == [(str(tmp_path), False)]


async def test_directory_created_after_start(tmp_path: Path) -> None:
    from tests.shippers.helpers import wait_for

    cfg = ShipperConfig(
        inputs=[LogInputConfig(paths=[str(tmp_path / "later" / "*.log")])],
        state_dir=tmp_path / "state",
        rescan_interval_s=0.2,
        watch_debounce_ms=50,
    )
    out = ListOutput()
    shipper = Shipper(cfg, out, log_topic="t")
    task = asyncio.create_task(shipper.run())
    await shipper.started.wait()
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "new.log").write_text("hello\n")
    assert await wait_for(lambda: len(out.records) == 1, 30)
    with open(tmp_path / "later" / "new.log", "a") as f:
        f.write("again\n")
    assert await wait_for(lambda: len(out.records) == 2, 30)
    shipper.request_stop()
    await task


class _SizeLimitedOutput(ListOutput):
    """Refuses any call carrying a record over `limit` bytes, as a broker's message.max.bytes does."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    async def send(self, topic: str, records) -> None:  # type: ignore[no-untyped-def,override]
        if any(len(v) > self.limit for _k, v in records):

            class MessageSizeTooLargeError(Exception):
                pass

            raise MessageSizeTooLargeError("too large")
        await super().send(topic, records)


async def test_oversized_record_is_shipped_truncated_not_retried_forever(tmp_path: Path) -> None:
    (tmp_path / "big.log").write_text("small one\n" + "B" * 150_000 + "\nsmall two\n")
    out = _SizeLimitedOutput(100_000)
    await Shipper(_cfg(tmp_path), out, once=True, log_topic="t").run()
    events = [validate_event(v) for _t, _k, v in out.records]
    assert [e.message[:9] for e in events] == ["small one", "B" * 9, "small two"]
    assert len(events[1].message) == 64 << 10 and "truncated" in events[1].logtide.flags


async def test_nothing_read_is_loud(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """An input matching no file and --once with start_position: end each log why and what to change."""
    import logging

    (tmp_path / "a.log").write_text("a\n")
    cfg = ShipperConfig(
        inputs=[LogInputConfig(paths=[str(tmp_path / "*.log")], start_position="end"),
                LogInputConfig(id="typo", paths=[str(tmp_path / "nginx" / "acces.log")])],
        state_dir=tmp_path / "state", host_name="h",
    )  # fmt: skip
    out = ListOutput()
    with caplog.at_level(logging.WARNING, logger="logtide.shippers.shipper"):
        await Shipper(cfg, out, once=True, log_topic="t").run()
    text = caplog.text
    assert "--once with start_position: end reads nothing" in text and "--from-beginning" in text
    assert "input typo: no file matches" in text and out.records == []


async def test_unwritable_state_dir_is_one_clear_error(tmp_path: Path) -> None:
    import pytest
    from logtide.shippers.checkpoint_store import StateDirError

    (tmp_path / "file").write_text("")
    cfg = _cfg(tmp_path).model_copy(update={"state_dir": tmp_path / "file" / "state"})
    with pytest.raises(StateDirError, match=r"state directory .*file/state.*--state-dir"):
        await Shipper(cfg, ListOutput(), once=True, log_topic="t").run()
