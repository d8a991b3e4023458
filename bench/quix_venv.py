"""The interpreter the Quix Streams runner of bench_streams.py runs in, made on demand.

Why a venv of its own: Quix Streams 3.x pins pydantic < 2.14, below our lock, so it cannot share
`.venv`. It is `.venv/quix`, built with uv from this checkout (`-e .`, so the runner imports this
worktree's logtide) and an exact pin of Quix Streams, so every run compares against the same peer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

QUIX_VERSION = "3.28.1"  # the peer measured; bump it here (and say so in the report) to measure another

_PROBE = ("import importlib.metadata as m, logtide.streams.batch as b; "
          "print(m.version('quixstreams')); print(b.__file__)")


def _probe(python: str) -> tuple[str, str] | None:
    """(quixstreams version, where logtide.streams comes from) in `python`, or None if it has neither."""
    try:
        out = subprocess.run([python, "-c", _PROBE], check=False, capture_output=True, text=True, timeout=120, cwd="/",
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    return (lines[0], lines[1]) if out.returncode == 0 and len(lines) == 2 else None


def _fits(python: str, root: Path) -> str | None:
    """Why `python` does not fit (None when it has the pinned Quix and this checkout's logtide)."""
    got = _probe(python)
    if got is None:
        return "quixstreams or logtide does not import"
    version, where = got
    if version != QUIX_VERSION:
        return f"quixstreams {version}, not {QUIX_VERSION}"
    if not Path(where).resolve().is_relative_to(root.resolve()):
        return f"its logtide is {where}, not this checkout's"
    return None


def quix_python(root: Path) -> str:
    """The Quix runner's interpreter: $BENCH_QUIX_PYTHON as given, else `.venv/quix` under `root`,
    created (or rebuilt) with uv when missing or not pinned. Exits with one line when that fails."""
    given = os.environ.get("BENCH_QUIX_PYTHON")
    if given:
        why = _fits(given, root)
        if why:
            sys.exit(f"BENCH_QUIX_PYTHON={given} does not fit: {why} (unset it to let the bench build .venv/quix)")
        return given
    venv = root / ".venv" / "quix"
    python = venv / "bin" / "python"
    why = _fits(str(python), root) if python.exists() else "missing"
    if why is None:
        return str(python)
    uv = shutil.which("uv", path=str(root / ".venv" / "bin")) or shutil.which("uv")
    if uv is None:
        sys.exit(f"{venv} is {why} and uv is not found to build it: run scripts/setup.sh, or pass --no-quix")
    print(f"building {venv} ({why}): quixstreams=={QUIX_VERSION} and this checkout, with uv ...", flush=True)
    steps = [[uv, "venv", "--quiet", "--allow-existing", "--python", str(root / ".venv" / "bin" / "python"), str(venv)],
             [uv, "pip", "install", "--quiet", "--python", str(python), "-e", str(root), f"quixstreams=={QUIX_VERSION}"]]
    for cmd in steps:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=str(root))
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            sys.exit(f"could not build {venv} ({' '.join(cmd[:3])} ...): {last} (or pass --no-quix)")
    why = _fits(str(python), root)
    if why:
        sys.exit(f"{venv} was built but does not fit: {why}")
    return str(python)
