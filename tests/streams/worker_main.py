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
    from logtide import log_setup
    from logtide.config import load_config

    # the tests read Faust's own INFO lines (partition assignment, "Worker ready") from the worker's
    # log; the product holds them at WARNING with the other libraries' chatter
    log_setup.LIBRARY_LOGGERS = tuple(n for n in log_setup.LIBRARY_LOGGERS if n not in ("faust", "mode", "aiokafka"))
    from logtide.streams_command import run_worker

    cfg_path, state_dir = sys.argv[1], sys.argv[2]
    import logging

    if os.environ.get("LOGTIDE_STREAMS_TRACE"):
        logging.getLogger("logtide.streams").setLevel(logging.DEBUG)
    run_worker(load_config(cfg_path), state_dir=Path(state_dir), loglevel="info", config_path=cfg_path)
