"""Regex with named groups: the escape hatch for any line format (HDFS, Apache error log, ...)."""

from __future__ import annotations

import re
from typing import Any

from logtide.shippers.parsers.base import ParseError, split_mapped


class RegexParser:
    def __init__(
        self,
        pattern: str,
        message_key: str | None = None,
        level_key: str | None = None,
        ts_key: str | None = None,
    ):
        self.match = re.compile(pattern, re.DOTALL).match  # "." spans the lines of a multiline event
        self.keys = (message_key, level_key, ts_key)

    def parse(self, line: str) -> dict[str, Any]:
        m = self.match(line)
        if m is None:
            raise ParseError("line does not match the pattern")
        fields = {k: v for k, v in m.groupdict().items() if v is not None}
        return split_mapped(fields, *self.keys, original=line)
