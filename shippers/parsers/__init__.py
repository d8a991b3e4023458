"""Line parsers: text in, a dict of fields out, no I/O.

Each parser returns a dict with `message` and optionally `ts` (raw timestamp), `level` (raw),
`logger`, `attributes` (fields with no ECS home) and `ecs` (ECS groups such as `http`, `url`,
`source`, `process`). A line that does not fit raises `ParseError`; the event builder then ships
it anyway, with the original text and a `parse_failure` flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from logtide.shippers.config import ParserConfig
from logtide.shippers.parsers.base import ParseError

Parser = Callable[[str], dict[str, Any]]

# Timestamp formats tried when the configuration names none.
DEFAULT_TS_FORMATS = {
    "plain": [],
    "json": ["iso8601", "auto"],
    "logfmt": ["iso8601", "auto"],
    "access_log": ["clf", "auto"],
    "syslog": ["iso8601", "rfc3164", "auto"],
    "regex": ["iso8601", "auto"],
}


def make_parser(cfg: ParserConfig) -> Parser:
    """The parse function for one input's parser configuration."""
    if cfg.type == "plain":
        from logtide.shippers.parsers.plain import parse_plain

        return parse_plain
    if cfg.type == "json":
        from logtide.shippers.parsers.json_lines import JsonParser

        return JsonParser(cfg.message_field, cfg.level_field, cfg.timestamp_field).parse
    if cfg.type == "logfmt":
        from logtide.shippers.parsers.logfmt import LogfmtParser

        return LogfmtParser(cfg.message_field, cfg.level_field, cfg.timestamp_field).parse
    if cfg.type == "access_log":
        from logtide.shippers.parsers.access_log import parse_access_log

        return parse_access_log
    if cfg.type == "syslog":
        from logtide.shippers.parsers.syslog import parse_syslog

        return parse_syslog
    from logtide.shippers.parsers.regex import RegexParser

    assert cfg.pattern is not None
    return RegexParser(cfg.pattern, cfg.message_field, cfg.level_field, cfg.timestamp_field).parse


__all__ = ["DEFAULT_TS_FORMATS", "ParseError", "Parser", "make_parser"]
