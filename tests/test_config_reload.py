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
