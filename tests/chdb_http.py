"""ClickHouse's HTTP interface on top of chdb, for tests only.

The engine is the real ClickHouse (chdb, in-process); this module only speaks the HTTP side of it,
so the real clickhouse-connect client can connect, DESCRIBE, create tables, insert (`INSERT ...
FORMAT Native` bodies, chunked and compressed) and select against it. `stop()`/`start()` take the
listening socket away and bring it back on the same port: a server outage, with the data kept.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import tempfile
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

# URL parameters that are not ClickHouse settings (the rest become `SET name = value`).
_NOT_SETTINGS = {"query", "database", "query_id", "session_id", "session_timeout", "session_check",
                 "default_format", "user", "password", "compress", "decompress", "quota_key",
                 # settings of the HTTP handler, not of the engine
                 "wait_end_of_query", "enable_http_compression", "send_progress_in_http_headers",
                 "http_headers_progress_interval_ms", "http_zlib_compression_level", "buffer_size"}
_INSERT_DATA = re.compile(rb"\s*(INSERT\b.*?)\s+FORMAT\s+(\w+)[ \t]*\r?\n?", re.IGNORECASE | re.DOTALL)


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class ChdbHttpServer:
    def __init__(self, path: str | Path, port: int = 0) -> None:
        from chdb import session

        self.session = session.Session(str(path))
        self.lock = threading.Lock()
        self.requests = 0
        self.drop_after_insert = 0  # inserts to execute and then answer by closing the connection
        self._tmp = Path(tempfile.mkdtemp(prefix="chdb-http-"))
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self.connections: set = set()  # open keep-alive sockets, cut by stop()

    def start(self) -> ChdbHttpServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
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

    def close(self) -> None:
        self.stop()
        self.session.close()

    def execute(self, params: dict[str, str], body: bytes) -> bytes:
        # As ClickHouse does: the `query` parameter, then the body; an INSERT's data follows its FORMAT.
        text = (params["query"].encode() + b"\n" + body) if params.get("query") else body
        insert = _INSERT_DATA.match(text)
        if insert and text[insert.end():].strip():
            data_path = self._tmp / f"insert-{threading.get_ident()}.bin"
            data_path.write_bytes(text[insert.end():])
            query = f"{insert.group(1).decode()} FROM INFILE '{data_path}' FORMAT {insert.group(2).decode()}"
        else:
            query = text.decode()
        with self.lock:
            self.requests += 1
            if params.get("database"):
                self.session.query(f"USE {params['database']}")
            for name, value in params.items():
                if name not in _NOT_SETTINGS and not name.startswith("param_"):
                    self.session.query(f"SET {name} = '{value}'")
            result = self.session.query(query, params.get("default_format", "TabSeparated"))
        return result.bytes()


class _Handler(BaseHTTPRequestHandler):
    owner: ChdbHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.owner.connections.add(self.connection)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return _decompress(body, self.headers.get("Content-Encoding", ""))

    def _answer(self) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query))
        body = self._body()
        if self.owner.drop_after_insert and b"INSERT" in (params.get("query", "").encode() + body[:100]).upper():
            self.owner.drop_after_insert -= 1
            self.owner.execute(params, body)  # written, but the client never hears so: it must retry
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if urlsplit(self.path).path == "/ping":
            status, out, extra = 200, b"Ok.\n", {}
        else:
            try:
                status, out, extra = 200, self.owner.execute(params, body), {}
            except Exception as exc:  # the engine's own error text, as ClickHouse sends it
                text = str(exc)
                code = re.match(r"Code: (\d+)", text)
                status, out = 500, text.encode()
                extra = {"X-ClickHouse-Exception-Code": code.group(1) if code else "1000"}
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer
