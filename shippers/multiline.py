"""Grouping lines into events (Java stack traces, Python tracebacks, indented continuations).

Pure: lines go in, complete events come out. The harvester calls `flush()` when the file has been
quiet for the flush timeout, so the last event of a burst does not wait for the next line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from logtide.shippers.config import MultilineConfig


@dataclass
class MultilineEvent:
    start: int
    end: int
    lines: list[str] = field(default_factory=list)
    size: int = 0
    flags: set[str] = field(default_factory=set)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class MultilineAggregator:
    """`start` mode: a match begins an event. `continuation` mode: a match continues one."""

    def __init__(self, cfg: MultilineConfig) -> None:
        self.cfg = cfg
        self._match = re.compile(cfg.pattern).search
        self._negate = cfg.negate
        self._start_mode = cfg.mode == "start"
        self.current: MultilineEvent | None = None

    def _begins_event(self, text: str) -> bool:
        matched = self._match(text) is not None
        if self._negate:
            matched = not matched
        return matched if self._start_mode else not matched

    def push(self, text: str, start: int, end: int, flags: tuple[str, ...] = ()) -> MultilineEvent | None:
        """Add one line; returns the event it completed, if any."""
        done = None
        cur = self.current
        if cur is None or self._begins_event(text):
            done = cur
            cur = self.current = MultilineEvent(start, end)
            cur.lines.append(text)
            cur.size = len(text)
        else:
            cur.end = end
            if len(cur.lines) >= self.cfg.max_lines or cur.size + len(text) + 1 > self.cfg.max_bytes:
                cur.flags.add("truncated")  # consumed, not kept: the cap bounds memory
            else:
                cur.lines.append(text)
                cur.size += len(text) + 1
        if flags:
            cur.flags.update(flags)
        return done

    def flush(self) -> MultilineEvent | None:
        done, self.current = self.current, None
        return done

    def reset(self) -> None:
        self.current = None

    @property
    def pending_start(self) -> int | None:
        return None if self.current is None else self.current.start
