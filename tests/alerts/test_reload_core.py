"""A reloaded `alerts` section applied to the running core (event time, no I/O): routes that stay keep
their groups and notification log (no second page), a route that goes keeps its group only to send
the resolves it owes, new routes and inhibition rules and the file's silences apply at once."""

from __future__ import annotations

from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.dispatch import Notification
from logtide.sinks.alerts.engine import AlertEngine
from logtide.sinks.alerts.reconfigure import sync_static_silences

from tests.alerts.helpers import T0, anomaly

T = T0.timestamp()


def _cfg(routes: list[dict], receivers: tuple[str, ...] = ("default", "pager", "chat"), **kw: object) -> AlertsConfig:
    return AlertsConfig.model_validate({
        "route": {"receiver": "default", "group_by": ["service"], "group_wait": 0, "group_interval": 60,
                  "routes": routes},
        "receivers": [{"name": n} for n in receivers], "flapping": {"enabled": False}, "inhibit_rules": [], **kw,
    })


CHECKOUT = {"matchers": ['service="checkout"'], "receiver": "pager"}
SEARCH = {"matchers": ['service="search"'], "receiver": "chat"}


def _engine(cfg: AlertsConfig) -> tuple[AlertEngine, list[Notification], list[tuple[str, object]]]:
    notes: list[Notification] = []
    persisted: list[tuple[str, object]] = []
    e = AlertEngine(cfg, clock=None, on_notification=notes.append, persist=lambda k, v: persisted.append((k, v)))
    return e, notes, persisted


def _sent(notes: list[Notification]) -> list[tuple[str, str, str]]:
    return [(n.receiver, n.status, n.group_key) for n in notes]


def test_a_route_that_stays_keeps_its_group_no_second_page_and_the_resolve_arrives() -> None:
    e, notes, _ = _engine(_cfg([CHECKOUT]))
    e.ingest(anomaly("checkout", at=60, episode="e1"), T + 60)
    assert _sent(notes) == [("pager", "firing", '0/{service="checkout"}:{service="checkout"}')]
    key = notes[0].group_key
    # another route before it, new timers on it
    out = e.reconfigure(_cfg([SEARCH, {**CHECKOUT, "group_interval": 30}]))
    assert (out.kept, out.retired, out.renamed) == (1, 0, {})
    assert e.dispatcher.groups[key].route.group_interval == 30  # the new timer, on the same group
    e.tick(T + 3600)
    assert len(notes) == 1, "nothing changed for the checkout group: no second page"
    e.ingest(anomaly("search", at=3700, episode="s1"), T + 3700)
    assert _sent(notes)[1][:2] == ("chat", "firing")
    e.ingest(anomaly("checkout", at=3800, episode="e1", resolved=True), T + 3800)
    e.tick(T + 3900)
    assert ("pager", "resolved", key) in _sent(notes)


def test_a_route_that_goes_owes_its_resolve_and_pages_no_more() -> None:
    e, notes, _ = _engine(_cfg([CHECKOUT]))
    e.ingest(anomaly("checkout", at=60, episode="e1"), T + 60)
    key = notes[0].group_key
    out = e.reconfigure(_cfg([]))  # the checkout route is removed: its alerts go to the root route
    assert (out.kept, out.retired, out.new_groups) == (0, 1, 1)
    e.tick(T + 120)
    assert _sent(notes)[1] == ("default", "firing", '0:{service="checkout"}')
    e.tick(T + 5 * 3600)  # past the repeat interval: the root group repeats, the retired one does not
    assert [s for s in _sent(notes) if s[0] == "pager"] == [("pager", "firing", key)]
    e.ingest(anomaly("checkout", at=5 * 3600 + 60, episode="e1", resolved=True), T + 5 * 3600 + 60)
    e.tick(T + 5 * 3600 + 200)
    resolves = {s for s in _sent(notes) if s[1] == "resolved"}
    assert resolves == {("pager", "resolved", key), ("default", "resolved", '0:{service="checkout"}')}
    assert not any(g.retired for g in e.dispatcher.groups.values()), "the retired group went once paid"


def test_a_new_receiver_on_the_same_route_takes_over_and_the_old_one_gets_its_resolve() -> None:
    e, notes, persisted = _engine(_cfg([CHECKOUT], receivers=("default", "pager", "pager2")))
    e.ingest(anomaly("checkout", at=60, episode="e1"), T + 60)
    key = notes[0].group_key
    out = e.reconfigure(_cfg([{**CHECKOUT, "receiver": "pager2"}], receivers=("default", "pager", "pager2")))
    assert out.retired == 1 and out.renamed == {key: key + "#retired"}
    assert (f"{key}#retired/pager", e.dispatcher.nflog.entries[f"{key}#retired/pager"]) in persisted
    assert (f"{key}/pager", None) in persisted
    e.tick(T + 120)
    assert _sent(notes)[1] == ("pager2", "firing", key)
    e.ingest(anomaly("checkout", at=300, episode="e1", resolved=True), T + 300)
    e.tick(T + 400)
    assert {s[:2] for s in _sent(notes)[2:]} == {("pager", "resolved"), ("pager2", "resolved")}


def test_inhibition_rules_and_file_silences_apply_at_once() -> None:
    e, notes, _ = _engine(_cfg([]))
    rule = {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
            "equal": ["service"]}
    e.reconfigure(_cfg([], inhibit_rules=[rule]))
    e.ingest(anomaly("checkout", at=60, episode="c", severity="critical"), T + 60)
    e.ingest(anomaly("checkout", metric="lat", at=60, episode="w", severity="warning"), T + 60)
    e.tick(T + 200)  # the group's next flush (group_interval 60) sees the warning: inhibited
    assert [a.labels["severity"] for n in notes for a in n.alerts] == ["critical"]
    assert e.dispatcher.suppressed["inhibited"] >= 1
    silenced = _cfg([], silences=[{"matchers": ['service="search"'], "comment": "maintenance"}])
    out = e.reconfigure(silenced)
    assert (out.silences_added, out.silences_ended) == (1, 0)
    assert sync_static_silences(e.dispatcher.silences, silenced.silences, T + 101) == (0, 0)  # idempotent
    e.ingest(anomaly("search", at=220, episode="s1"), T + 220)
    assert not [n for n in notes if n.group_labels.get("service") == "search"]
    assert e.dispatcher.suppressed["silenced"] >= 1
    out = e.reconfigure(_cfg([]))
    assert (out.silences_added, out.silences_ended) == (0, 1)
    e.tick(T + 300)
    assert [n.status for n in notes if n.group_labels.get("service") == "search"] == ["firing"]


async def test_receivers_follow_a_reload_a_removed_one_is_kept_until_paid() -> None:
    """Started engine, real loopback receivers: a receiver whose URL changes sends what follows to the
    new URL; a receiver removed with its route still gets the resolve it is owed, then its worker goes."""
    from tests.alerts.receiver import Receiver

    pager, pager_new, chat = [await Receiver().start() for _ in range(3)]

    def cfg(pager_url: str, with_pager: bool) -> AlertsConfig:
        hooks = {"pager": pager_url, "chat": chat.url}
        names = ("chat", "pager") if with_pager else ("chat",)
        return AlertsConfig.model_validate({
            "route": {"receiver": "chat", "group_by": ["service"], "group_wait": 0, "group_interval": 60,
                      "routes": [CHECKOUT] if with_pager else []},
            "receivers": [{"name": n, "webhook_configs": [{"url": hooks[n]}]} for n in names],
            "flapping": {"enabled": False}, "inhibit_rules": [],
            "delivery": {"rate_per_second": 100, "backoff_initial_seconds": 0.01, "timeout_seconds": 2},
        })

    e = AlertEngine(cfg(pager.url, True), clock=None)
    await e.start()
    try:
        e.ingest(anomaly("checkout", at=60, episode="e1"), T + 60)
        await e.drain()
        assert [r.json["status"] for r in pager.received] == ["firing"]
        e.reconfigure(cfg(pager_new.url, True))  # new URL: same route, same group, nothing re-sent
        e.ingest(anomaly("checkout", metric="lat", at=120, episode="e2"), T + 120)
        e.tick(T + 200)
        await e.drain()
        assert len(pager.received) == 1 and [r.json["status"] for r in pager_new.received] == ["firing"]
        out = e.reconfigure(cfg(pager_new.url, False))  # route and receiver removed while e1, e2 fire
        assert out.retired == 1 and "pager" in e.workers
        e.tick(T + 300)
        await e.drain()
        assert [r.json["groupLabels"] for r in chat.received] == [{"service": "checkout"}]
        e.ingest(anomaly("checkout", at=400, episode="e1", resolved=True), T + 400)
        e.ingest(anomaly("checkout", metric="lat", at=400, episode="e2", resolved=True), T + 400)
        for t in range(400, 800, 60):
            e.tick(T + t)
            await e.drain()
        assert [r.json["status"] for r in pager_new.received] == ["firing", "resolved"]
        assert "pager" not in e.workers, "a removed receiver's worker goes once nothing is owed"
        assert [r.json["status"] for r in chat.received] == ["firing", "resolved"]
    finally:
        await e.close()
        for rx in (pager, pager_new, chat):
            await rx.stop()


def test_log_entries_of_positional_route_ids_are_carried_over() -> None:
    """Before route ids named the matcher path they were positions: a log written then pages nobody
    again after the upgrade."""
    from logtide.sinks.alerts.nflog import Entry
    from logtide.sinks.alerts.reconfigure import migrate_legacy_keys
    from logtide.sinks.alerts.routing import build_route

    cfg = _cfg([CHECKOUT])
    first, notes, _ = _engine(cfg)
    first.ingest(anomaly("checkout", at=60, episode="e1"), T + 60)
    fp = notes[0].alerts[0].fp
    legacy = {'0.0:{service="checkout"}/pager': Entry(frozenset({fp}), frozenset(), T + 60, "h"),
              '0:{service="x"}/default': Entry(frozenset({"a"}), frozenset(), T, "h"),
              '0.7:{a="b"}/gone': Entry(frozenset({"b"}), frozenset(), T, "h")}
    for migrate in (False, True):
        e, notes, _ = _engine(cfg)
        e.dispatcher.nflog.entries = dict(legacy)
        moved = migrate_legacy_keys(e.dispatcher.nflog, build_route(cfg.route)) if migrate else {}
        e.ingest(anomaly("checkout", at=120, episode="e1"), T + 120)  # after a restart: replayed
        assert len(notes) == (0 if migrate else 1), "without the migration the open incident pages again"
    assert moved == {'0.0:{service="checkout"}/pager': '0/{service="checkout"}:{service="checkout"}/pager'}
    assert set(e.dispatcher.nflog.entries) >= {'0:{service="x"}/default', '0.7:{a="b"}/gone'}
