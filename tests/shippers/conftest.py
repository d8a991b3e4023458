"""Fixtures of the shipper tests: the real local Kafka (no Elasticsearch needed), unique topics,
and an in-process shipper that runs in the background of a test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from logtide.services import ensure_up

    return ensure_up(elasticsearch=False)["kafka"]


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    from tests.shippers.helpers import create_topic

    name = f"ship-test-{uuid.uuid4().hex[:10]}"
    await create_topic(kafka_bootstrap, name, partitions=3)
    return name


def shipper_config(tmp_path: Path, paths: list[str], **kw: Any):  # type: ignore[no-untyped-def]
    """A ShipperConfig tuned for tests: fast rescans and short grace periods (behaviour, not timing)."""
    from logtide.shippers.config import LogInputConfig, ShipperConfig

    inp = {"paths": paths, "start_position": "beginning", **kw.pop("input", {})}
    base = {
        "inputs": [LogInputConfig(**inp)],
        "state_dir": tmp_path / "state",
        "rescan_interval_s": 0.5,
        "close_removed_after_s": 0.5,
        "checkpoint_interval_s": 0.2,
        "watch_debounce_ms": 50,
        "retry_initial_s": 0.1,
        "retry_max_s": 2.0,
        "host_name": "test-host",
    }
    base.update(kw)
    return ShipperConfig(**base)


def kafka_output(bootstrap: str, **producer: Any):  # type: ignore[no-untyped-def]
    from logtide.shippers.kafka_output import KafkaOutput

    from logtide.config import KafkaConfig, ProducerConfig
    from logtide.kafka_client import producer_kwargs

    kcfg = KafkaConfig(bootstrap_servers=[bootstrap], producer=ProducerConfig(**producer))
    return KafkaOutput(producer_kwargs(kcfg))


@asynccontextmanager
async def running_shipper(
    cfg, bootstrap: str, topic: str, output: Any = None, **kw: Any
) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A continuously running shipper for the duration of the block; stopped gracefully after."""
    from logtide.shippers.shipper import Shipper

    shipper = Shipper(cfg, output or kafka_output(bootstrap), log_topic=topic, **kw)
    task = asyncio.create_task(shipper.run())
    started = asyncio.create_task(shipper.started.wait())
    await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield shipper
    finally:
        shipper.request_stop()
        await asyncio.wait_for(task, 60)


async def ship_once(cfg, bootstrap: str, topic: str) -> Any:  # type: ignore[no-untyped-def]
    from logtide.shippers.shipper import Shipper

    shipper = Shipper(cfg, kafka_output(bootstrap), log_topic=topic, once=True)
    await asyncio.wait_for(shipper.run(), 120)
    return shipper


async def wait_acked(shipper, path: Path, timeout_s: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    """Until the registry's acknowledged offset of `path`'s inode reaches its current size."""
    import os

    from tests.shippers.helpers import wait_for

    def done() -> bool:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return True
        state = shipper.states.get(f"{st.st_dev}:{st.st_ino}")
        return state is not None and state.offset == st.st_size

    return await wait_for(done, timeout_s)
