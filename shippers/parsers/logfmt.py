"""logfmt (`key=value key2="quoted value" flag`), as written by Heroku, Go's slog text handler, logrus."""

from __future__ import annotations

from typing import Any

from logtide.shippers.parsers.base import ParseError, split_mapped

_ESC = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def parse_pairs(line: str) -> dict[str, Any]:
    """Key/value pairs; a bare key means `true`. Raises ParseError on an unterminated quote."""
    out: dict[str, Any] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and line[j] not in "= ":
            j += 1
        key = line[i:j]
        if not key:
            raise ParseError(f"empty key at column {i}")
        if j >= n or line[j] == " ":
            out[key] = True
            i = j
            continue
        j += 1  # skip '='
        if j < n and line[j] == '"':
            j += 1
            buf = []
            while True:
                if j >= n:
                    raise ParseError(f"unterminated quoted value for {key!r}")
                c = line[j]
                if c == "\\" and j + 1 < n:
                    buf.append(_ESC.get(line[j + 1], line[j + 1]))
                    j += 2
                    continue
                if c == '"':
                    j += 1
                    break
                buf.append(c)
                j += 1
            out[key] = "".join(buf)
        else:
            k = j
            while k < n and line[k] != " ":
                k += 1
            out[key] = line[j:k]
            j = k
        i = j
    if not out:
        raise ParseError("no key=value pairs")
    return out


class LogfmtParser:
    def __init__(
        self, message_key: str | None = None, level_key: str | None = None, ts_key: str | None = None
    ):
        self.keys = (message_key, level_key, ts_key)

    def parse(self, line: str) -> dict[str, Any]:
        fields = parse_pairs(line)
        if not any(isinstance(v, str) for v in fields.values()):
            raise ParseError("no key=value pairs")
        return split_mapped(fields, *self.keys, original=line)
