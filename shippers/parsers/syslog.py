"""Syslog lines: RFC 5424 and RFC 3164 (BSD), with or without the `<PRI>` header.

Files written by rsyslog/syslog-ng carry RFC 3164 lines without PRI (`Jun 14 15:16:01 host tag[pid]: msg`);
network senders often prefix `<PRI>`. Tags like `sshd(pam_unix)` are kept whole, as on real hosts.
"""

from __future__ import annotations

import re
from typing import Any

from logtide.shippers.parsers.base import ParseError
from logtide.shippers.parsers.severity import syslog_severity

_FACILITIES = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
]  # fmt: skip
_PRI = re.compile(r"^<(\d{1,3})>")
_RFC5424 = re.compile(
    r"^([1-9]\d{0,2}) (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\](?:\[.*?\])*)(?: (.*))?$", re.S
)
_TS3164 = r"([A-Z][a-z]{2} [ \d]?\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)"
# With a host (what rsyslog writes to files); tags may hold spaces ("syslogd 1.4.1") or a leading "-- ".
_RFC3164 = re.compile("^" + _TS3164 + r" (\S+) +([^:\[\]]+?)(?:\[(\d+)\])?: ?(.*)$", re.S)
# Without a host (some network senders): "Oct 11 22:14:15 su: msg"
_RFC3164_NOHOST = re.compile("^" + _TS3164 + r" ()([^\s:\[\]]+)(?:\[(\d+)\])?: ?(.*)$", re.S)
_SD_ELEMENT = re.compile(r"\[([^\s\]=]+)((?:\s+[^\s=\]]+=\"(?:[^\"\\]|\\.)*\")*)\s*\]")
_SD_PARAM = re.compile(r'([^\s=\]]+)="((?:[^"\\]|\\.)*)"')


def _nil(s: str) -> str | None:
    return None if s == "-" else s


def parse_structured_data(sd: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for m in _SD_ELEMENT.finditer(sd):
        params = {k: re.sub(r'\\(["\\\]])', r"\1", v) for k, v in _SD_PARAM.findall(m.group(2))}
        out[m.group(1)] = params
    return out


def parse_syslog(line: str) -> dict[str, Any]:
    syslog: dict[str, Any] = {}
    rest = line
    level: str | None = None
    m = _PRI.match(line)
    if m:
        pri = int(m.group(1))
        if pri > 191:
            raise ParseError(f"priority {pri} out of range")
        syslog["priority"] = pri
        syslog["facility"] = {"code": pri >> 3, "name": _FACILITIES[pri >> 3]}
        level = syslog_severity(pri)
        syslog["severity"] = {"code": pri & 7, "name": level}
        rest = line[m.end() :]
        m5 = _RFC5424.match(rest)
        if m5:
            version, ts, host, app, procid, msgid, sd, msg = m5.groups()
            syslog["version"] = int(version)
            out: dict[str, Any] = {"message": (msg or "").removeprefix("\ufeff")}
            if ts != "-":
                out["ts"] = ts
            if _nil(host):
                syslog["hostname"] = host
            if _nil(app):
                syslog["appname"] = app
            if _nil(msgid):
                syslog["msgid"] = msgid
            if sd != "-":
                syslog["structured_data"] = parse_structured_data(sd)
            ecs: dict[str, Any] = {}
            proc: dict[str, Any] = {}
            if _nil(app):
                proc["name"] = app
            if _nil(procid):
                if procid.isdigit() and len(procid) <= 10:  # a pid, not 60 digits (JSON wants 64-bit)
                    proc["pid"] = int(procid)
                else:
                    syslog["procid"] = procid
            if proc:
                ecs["process"] = proc
            if level:
                out["level"] = level
            out["attributes"] = {"syslog": syslog}
            if ecs:
                out["ecs"] = ecs
            return out
    m3 = _RFC3164_NOHOST.match(rest) or _RFC3164.match(rest)
    if m3 is None:
        raise ParseError("neither RFC 5424 nor RFC 3164 syslog")
    ts, host, tag, pid, msg = m3.groups()
    if host:
        syslog["hostname"] = host
    tag = tag.strip()
    proc = {"name": tag}
    if pid is not None:
        if len(pid) <= 10:
            proc["pid"] = int(pid)
        else:  # not a pid a kernel hands out; kept as text (the encoder refuses integers past 64 bits)
            syslog["procid"] = pid
    out = {"message": msg, "ts": ts, "attributes": {"syslog": syslog}, "ecs": {"process": proc}}
    if level:
        out["level"] = level
    return out
