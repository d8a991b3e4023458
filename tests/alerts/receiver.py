"""A real HTTP receiver on loopback (aiohttp) for alert tests: it verifies Standard Webhooks signatures
and can be told to fail, throttle, reject or hang for its next requests, or to take the first request
to a path and hold its answer until released (to stop a sender between delivery and what follows)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from logtide.sinks.alerts.signing import verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signed_ok: bool | None

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    secret: str | None = None
    script: list[tuple[int, dict[str, str], str] | str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    hold: str | None = None  # a path suffix: its first request is received, then answered once `release` is set
    holding: asyncio.Event = field(default_factory=asyncio.Event)  # set while that request waits
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        step = self.script.pop(0) if self.script else None
        if step == "hang":
            await asyncio.sleep(3600)
        if isinstance(step, tuple):
            status, headers, text = step
            return web.Response(status=status, headers=headers, text=text)
        hdrs = {k.lower(): v for k, v in request.headers.items()}
        ok = None if self.secret is None else verify(self.secret, hdrs, body, int(time.time()))
        self.received.append(Received(request.path, hdrs, body, ok))
        if self.hold is not None and request.path.endswith(self.hold) and not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        return web.Response(status=202 if request.path.endswith("/enqueue") else 200, text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
