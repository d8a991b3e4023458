"""nginx and Apache access logs: Common and Combined Log Format, with ECS field names.

`log.level` comes from the status class (5xx error, 4xx warning, else info). key=value trailers after
the combined fields (nginx `log_format ... rt=$request_time urt="$upstream_response_time"`) are
read: known nginx timings become milliseconds under ECS-style names (`rt` ->
`http.request.duration_ms`, which the streams use for latency; `urt`/`uct`/`uht` ->
`http.upstream.{response,connect,header}_time_ms`, summed over the upstreams tried), `ua` fills
`user_agent.original` when the combined field did not, other keys go to attributes.
"""

from __future__ import annotations

import re
from typing import Any

from logtide.shippers.parsers.base import ParseError

_Q = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    r"^(\S+) (\S+) (\S+) \[([^\]]+)\] " + _Q + r" (\d{3}|-) (\d+|-)(?: " + _Q + " " + _Q + r")?(.*)$"
)


def parse_access_log(line: str) -> dict[str, Any]:
    m = _LINE.match(line)
    if m is None:
        raise ParseError("not a common/combined access log line")
    client, ident, user, ts, request, status, size, referrer, agent, rest = m.groups()
    http: dict[str, Any] = {}
    ecs: dict[str, Any] = {"source": {"address": client}, "http": http}
    if _is_ip(client):
        ecs["source"]["ip"] = client
    parts = request.split(" ")
    req: dict[str, Any] = {}
    if len(parts) == 3:
        req["method"] = parts[0]
        ecs["url"] = {"original": parts[1]}
        proto = parts[2]
        if proto.startswith("HTTP/"):
            http["version"] = proto[5:]
    elif request and request != "-":
        ecs["url"] = {"original": request}
    resp: dict[str, Any] = {}
    level = "info"
    if status != "-":
        code = int(status)
        resp["status_code"] = code
        level = "error" if code >= 500 else "warning" if code >= 400 else "info"
    if size != "-":
        nbytes = int(size)
        if nbytes < 1 << 63:  # JSON integers are 64-bit downstream; a larger "size" is not one
            resp["body"] = {"bytes": nbytes}
    if referrer and referrer != "-":
        req["referrer"] = referrer
    if req:
        http["request"] = req
    if resp:
        http["response"] = resp
    if agent and agent != "-":
        ecs["user_agent"] = {"original": agent}
    if user != "-":
        ecs["user"] = {"name": user}
    out: dict[str, Any] = {"message": line, "ts": ts, "level": level, "ecs": ecs}
    rest = rest.strip()
    attrs: dict[str, Any] = {}
    if ident != "-":
        attrs["ident"] = ident
    if rest:
        pairs = _TRAILER.findall(rest)
        if pairs and _TRAILER.sub("", rest).strip() == "":
            _trailers(pairs, ecs, http, attrs)
        else:
            attrs["extra"] = rest
    if attrs:
        out["attributes"] = attrs
    return out


_TRAILER = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_TIMINGS = {
    "rt": ("request", "duration_ms"), "request_time": ("request", "duration_ms"),
    "urt": ("upstream", "response_time_ms"), "upstream_response_time": ("upstream", "response_time_ms"),
    "uct": ("upstream", "connect_time_ms"), "upstream_connect_time": ("upstream", "connect_time_ms"),
    "uht": ("upstream", "header_time_ms"), "upstream_header_time": ("upstream", "header_time_ms"),
}  # fmt: skip


def _trailers(
    pairs: list[tuple[str, str]], ecs: dict[str, Any], http: dict[str, Any], attrs: dict[str, Any]
) -> None:
    for key, raw in pairs:
        value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
        timing = _TIMINGS.get(key)
        if timing is not None:
            ms = _seconds_to_ms(value)
            if ms is not None:
                http.setdefault(timing[0], {})[timing[1]] = ms
            continue
        if key in ("ua", "user_agent", "http_user_agent"):
            if value and value != "-":
                ecs.setdefault("user_agent", {"original": value})
            continue
        if value != "-":
            attrs[key] = value


def _seconds_to_ms(value: str) -> float | None:
    """nginx seconds with ms resolution; several upstreams are listed with ", " or " : " (summed)."""
    total = 0.0
    seen = False
    for piece in re.split(r"[,:]", value):
        part = piece.strip()
        if not part or part == "-":
            continue
        try:
            total += float(part)
        except ValueError:
            return None
        seen = True
    return round(total * 1000.0, 3) if seen else None


def _is_ip(s: str) -> bool:
    if s.count(".") == 3:
        return all(p.isdigit() and int(p) < 256 for p in s.split("."))
    return ":" in s and all(c in "0123456789abcdefABCDEF:." for c in s)
