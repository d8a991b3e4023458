"""Run a `logtide streams` worker with the test detector registered (integration tests start this as a
subprocess, so that killing it is killing a real worker process)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.streams.zdetector import register

register()

if os.environ.get("LOGTIDE_TEST_NO_INTENT") == "1":
    # mutation check for the kill -9 test: without announced batch cuts, replays must double count
    from logtide.streams import raw_reader

    raw_reader.parse_intent = lambda metadata: None

if __name__ == "__main__":
    from logtide.config import load_config
    from logtide.streams_command import run_worker

    cfg_path, state_dir = sys.argv[1], sys.argv[2]
    import logging

    if os.environ.get("LOGTIDE_STREAMS_TRACE"):
        logging.getLogger("logtide.streams").setLevel(logging.DEBUG)
    run_worker(load_config(cfg_path), state_dir=Path(state_dir), loglevel="info")
