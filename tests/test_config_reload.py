"""The shared reload helper: which keys changed, which of them a process applies live, the running
value kept for the others, and a broken file refused with its key path (nothing applied)."""

from __future__ import annotations

import logging

from logtide.streams.reload import LIVE_KEYS, SECTIONS

from logtide.config import parse_config
from logtide.config_reload import REFUSED, Reloader, changed_keys, keep_running, split_changes


def test_changed_keys_are_key_paths_lists_whole() -> None:
    a = parse_config({"streams": {"detect": {"threshold": 0.5}}})
    b = parse_config({"streams": {"detect": {"threshold": 0.7, "rules": [{"metric": "x"}]},
                                  "window": {"size_seconds": 30}},
                      "alerts": {"group_id": "other"}})
    assert changed_keys(a, b) == ["streams.window.size_seconds", "streams.detect.threshold",
                                  "streams.detect.rules", "alerts.group_id"]
    live, restart = split_changes(a, b, LIVE_KEYS, SECTIONS)
    assert live == ["streams.detect.threshold"]
    assert restart == ["streams.window.size_seconds", "streams.detect.rules"]  # alerts: not this process's
    kept = keep_running(a, b, restart)
    assert kept.streams.detect.threshold == 0.7 and kept.streams.window.size_seconds == 60
    assert kept.streams.detect.rules == a.streams.detect.rules
    assert b.streams.window.size_seconds == 30, "the new configuration itself is left as read"


def test_secrets_compare_by_value() -> None:
    a = parse_config({"kafka": {"security_protocol": "SASL_SSL",
                                "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p1"}}})
    same = parse_config({"kafka": {"security_protocol": "SASL_SSL",
                                   "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p1"}}})
    other = parse_config({"kafka": {"security_protocol": "SASL_SSL",
                                    "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p2"}}})
    assert changed_keys(a, same) == []
    assert changed_keys(a, other) == ["kafka.sasl.password"]


async def test_a_broken_file_is_refused_with_its_key_path_and_nothing_applied(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    from logtide.config import load_config

    f = tmp_path / "c.yaml"
    f.write_text("streams: {detect: {threshold: 2}}\n")
    applied: list[object] = []

    async def apply(cfg: object) -> None:
        applied.append(cfg)

    r = Reloader(lambda: load_config(f), apply, logging.getLogger("logtide.test"))
    with caplog.at_level(logging.ERROR):
        assert await r.reload() is False
    assert REFUSED in caplog.text and "streams.detect.threshold" in caplog.text and not applied
    f.write_text("streams: {detect: {threshold: 0.2}}\n")
    assert await r.reload() is True and applied[0].streams.detect.threshold == 0.2  # type: ignore[attr-defined]


async def test_watch_file_sees_a_change_made_before_it_started_and_reports_each_version_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from logtide.config_reload import file_state, watch_file

    f = tmp_path / "c.yaml"
    f.write_text("a: 1\n")
    since = file_state(f)  # when the configuration was read
    f.write_text("a: 2\n")  # changed during start-up, before the watcher runs
    seen: list[str] = []
    task = asyncio.create_task(watch_file(f, lambda: seen.append(f.read_text()), since=since, interval=0.05,
                                          settle=0.05))
    try:
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen == ["a: 2\n"]
        tmp = tmp_path / "c.yaml.new"  # an editor's save: write aside, rename over
        tmp.write_text("a: 3\n")
        tmp.replace(f)
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert seen == ["a: 2\n", "a: 3\n"]
    finally:
        task.cancel()
