"""Stable event ids: the same source record always hashes to the same id, so replays are idempotent."""

from __future__ import annotations

from binascii import hexlify
from hashlib import blake2b


def _part(part: object) -> bytes:
    b = part if isinstance(part, bytes) else repr(part).encode("utf-8", "surrogatepass")
    return len(b).to_bytes(4, "little") + b


def stable_id(*parts: object) -> str:
    """A 128-bit hex id of the parts; `None` and "" are distinct, order matters."""
    h = blake2b(digest_size=16)
    for part in parts:
        h.update(_part(part))
    return h.hexdigest()


class StableIdPrefix:
    """`stable_id(*prefix, last)` with the constant prefix hashed once (one file's lines: host, file
    fingerprint, then each line's offset)."""

    __slots__ = ("base",)

    def __init__(self, *prefix: object) -> None:
        self.base = blake2b(digest_size=16)
        for part in prefix:
            self.base.update(_part(part))

    def hex_of_repr(self, last_repr: bytes) -> bytes:
        """The id as ASCII bytes, given `repr(last).encode()` (the shipper's hot path has it already)."""
        h = self.base.copy()
        h.update(len(last_repr).to_bytes(4, "little") + last_repr)
        return hexlify(h.digest())

    def __call__(self, last: object) -> str:
        h = self.base.copy()
        b = last if isinstance(last, bytes) else repr(last).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(4, "little") + b)  # _part, inlined: once per shipped line
        return h.hexdigest()
