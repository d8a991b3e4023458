"""What the manager needs to know about one service, independent of which service it is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Service:
    name: str
    address: str  # what clients connect to, printed by `up` and `status`
    ports: tuple[int, ...]  # must be free before we start it
    pid_file: Path
    log_file: Path  # the service's own log: named in every failure message
    marker: str  # text in our process's command line that proves a pid is ours
    answers: Callable[[], bool]  # health probe: metadata request / cluster health
    fetch: Callable[[], object]  # download once into the cache (no-op when cached)
    start: Callable[[], int]  # write config, spawn detached, return the pid
