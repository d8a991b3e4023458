"""Run a `logtide streams` worker with the test detector registered (integration tests start this as a
subprocess, so that killing it is killing a real worker process)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.streams.zdetector import register

register()

if __name__ == "__main__":
    from logtide.config import load_config
    from logtide.streams_command import run_worker

    cfg_path, state_dir = sys.argv[1], sys.argv[2]
    import logging
    import os

    if os.environ.get("LOGTIDE_STREAMS_TRACE"):
        logging.getLogger("logtide.streams").setLevel(logging.DEBUG)
    run_worker(load_config(cfg_path), state_dir=Path(state_dir), loglevel="info")
