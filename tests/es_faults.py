"""A pass-through HTTP proxy in front of the real local Elasticsearch that can answer like a busy
or absent cluster, for tests only.

The shared local cluster cannot be made to answer 429 (that would mean reconfiguring its write
thread pool for every engineer on the box), so this proxy stands in for the overload part only:
items it marks busy are NOT forwarded and come back as `429 es_rejected_execution_exception`,
merged with the real cluster's answers for the others. Everything else is the real server.
`stop()` closes the port (a cluster that is down); `start()` brings it back.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson


class EsFaultProxy:
    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.busy_items = 0  # the next N bulk items answered 429 (and not forwarded)
        self.busy_requests = 0  # the next N bulk requests answered 503 as a whole
        self.bulk_requests = 0
        self._server: ThreadingHTTPServer | None = None
        self.connections: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EsFaultProxy:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), type("H", (_Handler,), {"owner": self}))
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(2)
        self.connections.clear()

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept")}
        r = httpx.request(method, self.upstream + path, headers=keep, content=body, timeout=60)
        return r.status_code, {"Content-Type": r.headers.get("content-type", "application/json")}, r.content

    def bulk(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        self.bulk_requests += 1
        if self.busy_requests:
            self.busy_requests -= 1
            return 503, {"Content-Type": "application/json"}, b'{"error":"unavailable","status":503}'
        lines = body.splitlines()
        pairs = [lines[i : i + 2] for i in range(0, len(lines), 2)]
        busy = set(range(0, min(self.busy_items * 2, len(pairs)), 2))  # every other item, up to N
        self.busy_items -= len(busy)
        forwarded = [p for i, p in enumerate(pairs) if i not in busy]
        answers = iter([])
        if forwarded:
            status, hdrs, out = self.forward("POST", path, headers, b"\n".join(x for p in forwarded for x in p) + b"\n")
            if status >= 300:
                return status, hdrs, out
            answers = iter(orjson.loads(out)["items"])
        items = []
        for i, pair in enumerate(pairs):
            if i in busy:
                op = next(iter(orjson.loads(pair[0])))
                error = {"type": "es_rejected_execution_exception", "reason": "rejected execution (test proxy)"}
                items.append({op: {"status": 429, "error": error}})
            else:
                items.append(next(answers))
        return 200, {"Content-Type": "application/json"}, orjson.dumps({"errors": True, "took": 1, "items": items})


class _Handler(BaseHTTPRequestHandler):
    owner: EsFaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.owner.connections.add(self.connection)

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = dict(self.headers.items())
        if self.path.split("?")[0].endswith("/_bulk"):
            status, out_headers, out = self.owner.bulk(self.path, headers, body)
        else:
            status, out_headers, out = self.owner.forward(self.command, self.path, headers, body)
        self.send_response(status)
        for k, v in {**out_headers, "X-Elastic-Product": "Elasticsearch"}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any
