"""The plain parser: the line is the message."""

from __future__ import annotations

from typing import Any


def parse_plain(line: str) -> dict[str, Any]:
    return {"message": line}
