"""The notification log in a file (adapter), for the embedded runner's live `logtide run`.

An append-only NDJSON file of `{"key": ..., "entry": ... | null}` lines, written and flushed as each
notification is logged; on open it is read back (the last line for a key wins; a torn last line from
a crash is ignored) and rewritten compacted (temp file, fsync, rename). So a restarted run neither
pages again for what it already sent nor forgets that it sent a firing it must now resolve.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

import orjson
from logtide.sinks.alerts.nflog import Entry, NotificationLog

log = logging.getLogger(__name__)


class NotificationLogFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.nflog = NotificationLog()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for n, line in enumerate(path.read_bytes().splitlines()):
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                    self.nflog.load(str(rec["key"]), rec["entry"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    log.warning("%s line %d unreadable (%s): skipped", path, n + 1, exc)
        self._compact()
        self._fh: IO[bytes] = path.open("ab")

    def _compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for k, e in self.nflog.entries.items():
                f.write(orjson.dumps({"key": k, "entry": e.to_plain()}) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def write(self, key: str, entry: Entry | None) -> None:
        """Append one change of the log (None: the key is gone) and flush it to the OS."""
        self._fh.write(orjson.dumps({"key": key, "entry": None if entry is None else entry.to_plain()}) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
