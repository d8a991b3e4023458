"""Bytes to lines: the only place that knows about newlines, size caps and binary content.

Pure: the harvester feeds it whatever `read()` returned, with the file offset of those bytes, and gets
complete lines with their byte offsets. A partial last line stays buffered (never more than
`max_line_bytes`), so memory is bounded whatever the file holds.
"""

from __future__ import annotations

from typing import Literal

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".z", ".7z", ".tgz", ".lzma", ".br")
_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18", b"PK\x03\x04")
_TEXT_CONTROL = {7, 8, 9, 10, 11, 12, 13, 27}

# A line: (start offset, end offset after its newline, raw bytes without the newline, truncated flag)
Line = tuple[int, int, bytes, bool]


def decode_line(raw: bytes, truncated: bool) -> tuple[str, list[str]]:
    """UTF-8 text of a line and its flags: invalid bytes become U+FFFD and flag `invalid_utf8`."""
    try:
        return raw.decode(), (["truncated"] if truncated else [])
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), (["invalid_utf8", "truncated"] if truncated else ["invalid_utf8"])


def is_compressed_name(path: str) -> bool:
    """Rotated archives are skipped by default: their content was shipped from the live file."""
    return path.lower().endswith(COMPRESSED_SUFFIXES)


def looks_binary(head: bytes) -> bool:
    """A NUL byte, a compression magic or many control bytes in the first bytes means not a log."""
    if not head:
        return False
    if head.startswith(_MAGICS):
        return True
    sample = head[:8192]
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample if b < 32 and b not in _TEXT_CONTROL)
    return control > len(sample) * 0.1


class LineReader:
    """Splits a byte stream into lines, capping each at `max_line_bytes`.

    `long_lines="truncate"` keeps the first `max_line_bytes` and skips to the next newline;
    `"split"` emits the over-long line in pieces. Both flag the affected lines.
    """

    __slots__ = ("_buf", "_buf_start", "_discarding", "long_lines", "max_line_bytes")

    def __init__(self, max_line_bytes: int, long_lines: Literal["truncate", "split"] = "truncate") -> None:
        self.max_line_bytes = max_line_bytes
        self.long_lines = long_lines
        self._buf = b""
        self._buf_start = 0
        self._discarding = False

    def reset(self, offset: int) -> None:
        """Forget any partial line (after truncation or a seek)."""
        self._buf = b""
        self._buf_start = offset
        self._discarding = False

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    @property
    def consumed_offset(self) -> int:
        """Offset just after the last complete line handed out (a safe resume point)."""
        return self._buf_start

    def feed(self, data: bytes, offset: int) -> list[Line]:
        """Lines completed by `data` (which starts at file `offset`, right after earlier data)."""
        out: list[Line] = []
        if not data:
            return out
        limit = self.max_line_bytes
        if self._buf or self._discarding:
            data = self._buf + data
            start = self._buf_start
        else:
            start = offset
        parts = data.split(b"\n")
        tail = parts.pop()
        append = out.append
        pos = start
        if self._discarding and parts:
            # The first part is the rest of a line already emitted truncated.
            first = parts[0]
            pos += len(first) + 1
            parts = parts[1:]
            self._discarding = False
        for part in parts:
            end = pos + len(part) + 1
            if len(part) > limit:
                self._emit_long(part, pos, end, out)
            elif part and part[-1] == 13:  # CRLF
                append((pos, end, part[:-1], False))
            else:
                append((pos, end, part, False))
            pos = end
        # tail: bytes after the last newline, not yet a line
        if self._discarding:
            self._buf = b""
            self._buf_start = pos + len(tail)
            return out
        if len(tail) > limit:
            if self.long_lines == "split":
                while len(tail) > limit:
                    append((pos, pos + limit, tail[:limit], True))
                    pos += limit
                    tail = tail[limit:]
            else:
                append((pos, pos + len(tail), tail[:limit], True))
                pos += len(tail)
                tail = b""
                self._discarding = True
        self._buf = tail
        self._buf_start = pos
        return out

    def _emit_long(self, part: bytes, pos: int, end: int, out: list[Line]) -> None:
        limit = self.max_line_bytes
        if self.long_lines == "split":
            p = pos
            while len(part) > limit:
                out.append((p, p + limit, part[:limit], True))
                p += limit
                part = part[limit:]
            out.append((p, end, part, True))
        else:
            out.append((pos, end, part[:limit], True))

    def flush(self) -> Line | None:
        """The buffered partial line as a line (used for --once at end of file), or None."""
        if self._discarding or not self._buf:
            self._discarding = False
            return None
        part = self._buf
        start = self._buf_start
        self._buf = b""
        self._buf_start = start + len(part)
        return (start, start + len(part), part, False)
