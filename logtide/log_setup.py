"""Logging for every logtide process: one place that decides format and who may speak at INFO.

INFO is for what changed in the pipeline (files opened or rotated, partitions assigned, a
minute's totals); the libraries' own chatter (watchfiles' change counts, Faust's tables, aiokafka,
the Elasticsearch transport's per-request lines) goes to DEBUG, which shows them again.
`logging.format: json` writes one ECS-style JSON object per line for log collectors.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

#: Loggers of libraries that log routine work at INFO; held at WARNING unless the level is DEBUG.
LIBRARY_LOGGERS = (
    "aiokafka", "kafka", "faust", "mode", "watchfiles", "elastic_transport", "elasticsearch",
    "httpx", "httpcore", "urllib3", "clickhouse_connect", "asyncio",
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with ECS field names (`@timestamp`, `log.level`, `log.logger`)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "process.pid": record.process,
        }
        if record.exc_info:
            doc["error.type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def logging_dict(level: str | int = "INFO", fmt: str = "text") -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary (also handed to Faust's worker, which applies its own)."""
    lvl = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    debug = lvl == "DEBUG"
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"logtide": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "stream": sys.stderr, "formatter": "logtide"},
        },
        "root": {"level": lvl, "handlers": ["stderr"]},
        "loggers": {name: {"level": "DEBUG" if debug else "WARNING"} for name in LIBRARY_LOGGERS},
    }


def configure_logging(level: str | int = "INFO", fmt: str = "text") -> None:
    """Apply `logging_dict` to this process (replaces handlers set before)."""
    logging.config.dictConfig(logging_dict(level, fmt))
