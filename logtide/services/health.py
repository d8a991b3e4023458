"""Is a service answering? Cheap probes usable from sync code and from inside a running event loop.

Kafka is probed with a hand-written Metadata request (API key 3, version 4: still supported by Kafka 4,
which dropped v0-v3) over a plain socket, so no asyncio loop or client library is needed.
"""

from __future__ import annotations

import socket
import ssl
import struct

import httpx

_METADATA_API_KEY = 3
_METADATA_VERSION = 4


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


def kafka_brokers(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Send one Metadata request (no topics) and return the brokers as (node_id, host, port)."""
    client_id = b"logtide-health"
    correlation_id = 7
    header = struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(client_id))
    body = struct.pack(">i?", 0, False)  # topics: empty array (brokers only); allow_auto_topic_creation
    message = header + client_id + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(message)) + message)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    got_id, _throttle, n_brokers = struct.unpack_from(">iii", data, 0)
    if got_id != correlation_id:
        raise ConnectionError(f"unexpected correlation id {got_id}")
    pos = 12
    brokers = []
    for _ in range(n_brokers):
        node_id, host_len = struct.unpack_from(">ih", data, pos)
        pos += 6
        broker_host = data[pos : pos + host_len].decode()
        pos += host_len
        broker_port, rack_len = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def kafka_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when the broker answers a metadata request and lists at least one broker."""
    try:
        return bool(kafka_brokers(host, port, timeout))
    except (OSError, ConnectionError, struct.error, UnicodeDecodeError):
        return False


def es_health(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None,
              verify: ssl.SSLContext | bool = True) -> str | None:  # fmt: skip
    """Cluster health status ('green', 'yellow', 'red') or None when Elasticsearch does not answer."""
    try:
        resp = httpx.get(f"{url}/_cluster/health", timeout=timeout, trust_env=False, auth=auth, verify=verify)
        if resp.status_code != 200:
            return None
        return str(resp.json().get("status"))
    except (httpx.HTTPError, ValueError):
        return None


def es_answers(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None,
               verify: ssl.SSLContext | bool = True) -> bool:  # fmt: skip
    """True when Elasticsearch answers and the cluster is usable (yellow or green)."""
    return es_health(url, timeout, auth, verify) in {"yellow", "green"}


def port_in_use(host: str, port: int) -> bool:
    """Something already listens on host:port (so starting there would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
