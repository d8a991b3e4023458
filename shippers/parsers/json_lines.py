"""JSON lines (one object per line), as written by structlog, zap, logrus, bunyan, pino, ECS loggers."""

from __future__ import annotations

from typing import Any

import orjson
from logtide.shippers.parsers.base import ParseError, split_mapped


class JsonParser:
    def __init__(
        self, message_key: str | None = None, level_key: str | None = None, ts_key: str | None = None
    ):
        self.keys = (message_key, level_key, ts_key)

    def parse(self, line: str) -> dict[str, Any]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"invalid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ParseError(f"expected a JSON object, got {type(obj).__name__}")
        # Nested {"log": {"level": ...}} as ECS loggers write it
        log = obj.get("log")
        if isinstance(log, dict) and "level" in log and "level" not in obj:
            obj["level"] = log.pop("level")
            if "logger" in log:
                obj["logger"] = log.pop("logger")
            if not log:
                del obj["log"]
        return split_mapped(obj, *self.keys, original=line)
