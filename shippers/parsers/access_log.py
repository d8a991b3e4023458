"""nginx and Apache access logs: Common and Combined Log Format, with ECS field names."""

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
        resp["body"] = {"bytes": int(size)}
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
    if rest or ident != "-":
        attrs: dict[str, Any] = {}
        if ident != "-":
            attrs["ident"] = ident
        if rest:
            attrs["extra"] = rest
        out["attributes"] = attrs
    return out


def _is_ip(s: str) -> bool:
    if s.count(".") == 3:
        return all(p.isdigit() and int(p) < 256 for p in s.split("."))
    return ":" in s and all(c in "0123456789abcdefABCDEF:." for c in s)
