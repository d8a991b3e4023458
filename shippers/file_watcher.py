"""Which files we ship: glob patterns with excludes, and the directories to watch for new ones.

`scan` is the periodic safety net and the start-up inventory; `watch_roots` gives the directories
that watchfiles (inotify) observes so that new and growing files are noticed without polling.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat as stat_mod
from pathlib import Path

from logtide.shippers.config import LogInputConfig
from logtide.shippers.line_reader import is_compressed_name
from logtide.shippers.reconcile import Seen

_MAGIC = set("*?[")


def _has_magic(s: str) -> bool:
    return any(c in _MAGIC for c in s)


def excluded(path: str, patterns: list[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _glob(pattern: str) -> list[str]:
    return [os.path.abspath(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)]


def scan(inputs: list[LogInputConfig]) -> tuple[list[Seen], list[tuple[str, int, str]]]:
    """Every regular file matched by an input (first input wins), and the ones skipped with why.

    Blocking (glob and stat): the shipper runs it in a thread."""
    found: dict[str, Seen] = {}
    skipped: list[tuple[str, int, str]] = []
    for idx, cfg in enumerate(inputs):
        for pattern in cfg.paths:
            for path in _glob(pattern):
                if path in found:
                    continue
                if excluded(path, cfg.exclude):
                    continue
                if not cfg.include_compressed and is_compressed_name(path):
                    skipped.append((path, idx, "compressed"))
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # vanished between glob and stat
                if not stat_mod.S_ISREG(st.st_mode):
                    continue
                found[path] = Seen(path, idx, st.st_dev, st.st_ino, st.st_size, st.st_mtime)
    return list(found.values()), skipped


def watch_roots(inputs: list[LogInputConfig]) -> list[tuple[str, bool]]:
    """(directory, recursive) pairs to watch: the deepest fixed directory of each pattern."""
    roots: dict[str, bool] = {}
    for cfg in inputs:
        for pattern in cfg.paths:
            parts = Path(os.path.abspath(os.path.expanduser(pattern))).parts
            fixed: list[str] = []
            for part in parts[:-1]:
                if _has_magic(part):
                    break
                fixed.append(part)
            recursive = len(fixed) < len(parts) - 1
            root = str(Path(*fixed)) if fixed else "/"
            roots[root] = roots.get(root, False) or recursive
    # A directory that does not exist yet: watch its nearest existing ancestor, not recursively (never
    # a recursive watch of a large tree); when it appears the roots change and the watcher restarts.
    out: dict[str, bool] = {}
    for root, recursive in roots.items():
        p = Path(root)
        rec = recursive
        while not p.is_dir() and p != p.parent:
            p, rec = p.parent, False
        out[str(p)] = out.get(str(p), False) or rec
    return sorted(out.items())
