"""File identity: device, inode and a hash of the first bytes.

The inode alone is not enough: after a delete the kernel hands the same inode to a new file, and
resuming that file at the old offset would skip its first lines. The head hash tells them apart;
it also recognises a copy of a file (copytruncate) by content.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from hashlib import blake2b


def head_hash(head: bytes) -> str:
    return blake2b(head, digest_size=12).hexdigest()


def file_key(dev: int, ino: int) -> str:
    """Registry key of a file: stable across renames."""
    return f"{dev}:{ino}"


@dataclass(frozen=True)
class Fingerprint:
    dev: int
    ino: int
    head_len: int
    head_hash: str

    @property
    def key(self) -> str:
        return file_key(self.dev, self.ino)


def read_head(fd: int, n: int) -> bytes:
    """Up to `n` bytes from the start of an open file (pread: the read position is untouched)."""
    return os.pread(fd, n, 0)


def fingerprint(fd: int, st: os.stat_result, n: int) -> Fingerprint:
    head = read_head(fd, n)
    return Fingerprint(st.st_dev, st.st_ino, len(head), head_hash(head))


def same_file(stored_head_len: int, stored_head_hash: str, current_head: bytes) -> bool:
    """Does a file whose first bytes are `current_head` continue the stored one?

    The file must still hold at least the stored head, byte for byte.
    """
    if len(current_head) < stored_head_len:
        return False
    return head_hash(current_head[:stored_head_len]) == stored_head_hash
