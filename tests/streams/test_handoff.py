"""The worker's message hand-off (`_fast_handoff`): same outcome as mode's `wait_first`, fewer tasks."""

from __future__ import annotations

import asyncio

import pytest
from logtide.streams.faust_app import _fast_handoff
from mode import Service


class _Consumer(Service):
    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


async def _run(body) -> None:
    c = _Consumer()
    _fast_handoff(c)
    await body(c)


def test_a_callback_that_does_not_wait_completes_in_place() -> None:
    got: list[int] = []

    async def cb(x: int) -> int:
        got.append(x)
        return x * 2

    async def body(c: _Consumer) -> None:
        r = await c.wait_first(cb(21), c.suspend_flow.wait())
        assert r.results == [42] and not r.stopped and got == [21]

    asyncio.run(_run(body))


def test_a_callback_that_waits_finishes_through_wait_first() -> None:
    async def body(c: _Consumer) -> None:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        q.put_nowait(0)  # full: the put below has to wait for the reader

        async def cb() -> str:
            await asyncio.sleep(0)
            await q.put(1)
            return "put"

        async def reader() -> None:
            await asyncio.sleep(0.01)
            assert q.get_nowait() == 0

        task = asyncio.ensure_future(reader())
        r = await c.wait_first(cb(), c.suspend_flow.wait())
        await task
        assert "put" in r.results and q.get_nowait() == 1

    asyncio.run(_run(body))


def test_a_waiting_callback_is_interrupted_by_suspend_flow() -> None:
    async def body(c: _Consumer) -> None:
        never = asyncio.Event()
        cancelled: list[bool] = []

        async def cb() -> None:
            try:
                await never.wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        asyncio.get_running_loop().call_later(0.01, c.suspend_flow.set)
        r = await c.wait_first(cb(), c.suspend_flow.wait())
        await asyncio.sleep(0)
        assert r.results == [True] and cancelled == [True]

    asyncio.run(_run(body))


def test_errors_propagate_both_ways() -> None:
    async def boom() -> None:
        raise ValueError("now")

    async def later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    async def body(c: _Consumer) -> None:
        with pytest.raises(ValueError):
            await c.wait_first(boom(), c.suspend_flow.wait())
        with pytest.raises(KeyError):
            await c.wait_first(later(), c.suspend_flow.wait())

    asyncio.run(_run(body))
