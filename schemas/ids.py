"""Stable event ids: the same source record always hashes to the same id, so replays are idempotent."""

from __future__ import annotations

from hashlib import blake2b


def stable_id(*parts: object) -> str:
    """A 128-bit hex id of the parts; `None` and "" are distinct, order matters."""
    h = blake2b(digest_size=16)
    for part in parts:
        b = part if isinstance(part, bytes) else repr(part).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(4, "little"))
        h.update(b)
    return h.hexdigest()
