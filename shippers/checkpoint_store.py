"""The registry: one JSON file of per-file read positions, replaced atomically.

Write to a temp file, fsync it, rename over the old one, fsync the directory: a crash at any moment
leaves either the old or the new registry, never a torn one. Offsets in it are only ever ones that
Kafka acknowledged (the harvester guarantees that), so a restart resumes without loss.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

log = logging.getLogger(__name__)
REGISTRY_VERSION = 1


@dataclass
class FileState:
    """What we know of one file; `offset` is acknowledged bytes (the resume point)."""

    key: str
    path: str
    dev: int
    ino: int
    head_len: int
    head_hash: str
    fp_id: str
    offset: int = 0
    input: str = ""
    updated: float = field(default_factory=time.time)


T = TypeVar("T")


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_json_or_set_aside(path: Path, what: str, check: Callable[[Any], T]) -> T | None:
    """Read a state file; one we cannot read must not stop the process: it is moved aside for
    inspection (`<name>.corrupt-<time>`) and None returned, as for a missing file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return check(orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        bad = path.with_suffix(f".corrupt-{int(time.time())}")
        log.error("%s %s unreadable (%s); moved to %s, starting without it", what, path, exc, bad)
        with contextlib.suppress(OSError):
            path.rename(bad)
        return None


class StateDirError(RuntimeError):
    """The registry's directory cannot be created or written; the message says what to change."""


class CheckpointStore:
    """Loads and atomically saves the registry in `state_dir/registry.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "registry.json"
        self.last_write = 0.0

    def check_writable(self) -> None:
        """One clear error at start rather than a failed checkpoint later (e.g. a non-root user and
        the default /var/lib/logtide/shipper)."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            ok = os.access(self.state_dir, os.W_OK | os.X_OK)
            why = "not writable by this user"
        except OSError as exc:
            ok, why = False, exc.strerror or str(exc)
        if not ok:
            raise StateDirError(
                f"state directory {self.state_dir}: {why}. Create it for this user "
                f"(sudo install -d -o $USER {self.state_dir}) or choose another with shipper.state_dir "
                "in the configuration or --state-dir"
            )

    def load(self) -> dict[str, FileState]:
        files = load_json_or_set_aside(
            self.path, "registry", lambda doc: {k: FileState(**v) for k, v in doc["files"].items()}
        )
        return files or {}

    def save(self, states: dict[str, FileState]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        doc = {"version": REGISTRY_VERSION, "files": {k: asdict(s) for k, s in states.items()}}
        atomic_write(self.path, orjson.dumps(doc), mode=0o600)
        self.last_write = time.time()
