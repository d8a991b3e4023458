"""The notification id (`webhook-id`) identifies a notification by its group, content and place in the
group's history, never by the flush time: a notification re-sent because it was never logged (the
process died between delivery and log write, and it or another instance replays and flushes again)
has the id it had; a reminder, a changed alert set, a resolve and a new episode have new ones. The
PagerDuty dedup key stays per group, so every re-sent trigger is idempotent and the resolve closes it."""

from __future__ import annotations

from logtide.sinks.alerts import payloads
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.dispatch import Dispatcher, Notification
from logtide.sinks.alerts.nflog import NotificationLog

from tests.alerts.helpers import T0, anomaly

T = T0.timestamp()
CFG = AlertsConfig.model_validate({
    "route": {"receiver": "hook", "group_by": ["service"], "group_wait": 30, "group_interval": 60,
              "repeat_interval": 600},
    "receivers": [{"name": "hook"}],
})


def durable(nflog: NotificationLog) -> NotificationLog:
    """What a restarted process or another instance reads back: the log as written (plain data)."""
    out = NotificationLog()
    for k, e in nflog.entries.items():
        out.load(k, e.to_plain())
    return out


def restart(before: Dispatcher, records: list, until: float) -> tuple[Dispatcher, list[Notification]]:
    """A new dispatcher on the durable log that replays `records` in event time and runs until `until`
    (one flush at a time, each delivered except the last, as the process would)."""
    d = Dispatcher(CFG, nflog=durable(before.nflog))
    for a in records:
        d.ingest(a, a.timestamp.timestamp())
    return d, d.advance(until)


def test_same_id_after_a_crash_before_the_log_write_new_id_for_each_new_notification() -> None:
    # live, a record is taken in a few seconds after its time; a restart replays it in event time
    fire1 = anomaly(at=60, episode="e1")
    d = Dispatcher(CFG)
    d.ingest(fire1, T + 65)
    [first] = d.advance(T + 95)
    # crash: delivered, never logged. The restart replays the record and flushes at another time.
    _, [again] = restart(d, [fire1], T + 400)
    assert again.at != first.at and again.id == first.id and again.content_hash == first.content_hash
    d.delivered(first, True, T + 96)
    assert d.nflog.entries[first.log_key].sent == 1

    # a reminder after repeat_interval: the same content, but one more notification logged
    assert d.advance(T + 690) == []
    [reminder] = d.advance(T + 695)
    assert reminder.content_hash == first.content_hash and reminder.id != first.id
    _, flushed = restart(d, [fire1], T + 760)
    assert [n.id for n in flushed] == [reminder.id]  # ... re-sent after a crash: the reminder's id
    d.delivered(reminder, True, T + 696)

    # the alert set changes: a second alert joins the group
    fire2 = anomaly(metric="http.request.duration_ms", at=760, episode="e2")
    d.ingest(fire2, T + 770)
    [changed] = d.advance(T + 820)
    assert changed.firing > first.firing
    _, flushed = restart(d, [fire1, fire2], T + 830)
    assert [n.id for n in flushed] == [changed.id]
    d.delivered(changed, True, T + 821)

    # both resolve: the resolve is new, and re-sent after a crash with its id
    res1, res2 = (anomaly(at=900, episode="e1", resolved=True, start=0),
                  anomaly(metric="http.request.duration_ms", at=900, episode="e2", resolved=True, start=700))
    d.ingest(res1, T + 905)
    d.ingest(res2, T + 905)
    [resolved] = d.advance(T + 935)
    assert resolved.status == "resolved"
    _, flushed = restart(d, [fire1, fire2, res1, res2], T + 1000)
    assert [(n.status, n.id) for n in flushed] == [("resolved", resolved.id)]
    d.delivered(resolved, True, T + 936)
    assert first.log_key not in d.nflog.entries and d.dropped_log == [first.log_key]  # the group is gone

    # the first alert fires again in a new episode: the same alert set as the first page, a new id
    d.ingest(anomaly(at=1200, episode="e3"), T + 1205)
    [reopened] = d.advance(T + 1235)
    assert reopened.firing == first.firing and reopened.seq == first.seq == 0

    ids = [first.id, reminder.id, changed.id, resolved.id, reopened.id]
    assert len(set(ids)) == len(ids)


def test_another_instance_gives_the_same_id_as_the_one_that_died() -> None:
    # sharding / standby takeover: the instance taking over has only the durable log and the records
    fire = anomaly("search", at=60, episode="s1")
    a = Dispatcher(CFG)
    a.ingest(fire, T + 65)
    [n] = a.advance(T + 95)
    a.delivered(n, True, T + 95)
    [reminder] = a.advance(T + 695)  # a dies delivering its reminder, before logging it
    _, flushed = restart(a, [fire], T + 2000)  # b replays in event time: its flushes fall at other times
    assert [(x.seq, x.id) for x in flushed] == [(1, reminder.id)] and flushed[0].at != reminder.at
    assert reminder.id != n.id


def test_a_failed_delivery_is_offered_again_with_its_id() -> None:
    d = Dispatcher(CFG)
    d.ingest(anomaly(at=60, episode="e1"), T + 60)
    [n] = d.advance(T + 90)
    d.delivered(n, False, T + 95)  # the receiver was down: nothing logged
    [again] = d.advance(T + 150)
    assert again.id == n.id and again.at != n.at


def test_records_without_an_episode_id_still_give_new_ids_for_a_new_incident() -> None:
    legacy = AlertsConfig.model_validate({**CFG.model_dump(mode="json"), "resolve_timeout": 120})
    d = Dispatcher(legacy)
    d.ingest(anomaly(at=60, episode=None), T + 60)
    [n] = d.advance(T + 90)
    d.delivered(n, True, T + 90)
    for t in range(150, 400, 60):  # it goes quiet, times out, and its resolve is sent
        for x in d.advance(T + t):
            d.delivered(x, True, T + t)
    assert n.log_key not in d.nflog.entries
    d.ingest(anomaly(at=600, episode=None), T + 600)
    [again] = d.advance(T + 630)
    assert again.firing == n.firing and again.id != n.id


def test_pagerduty_dedup_key_is_the_group_for_every_trigger_and_the_resolve() -> None:
    fire1 = anomaly(at=60, episode="e1")
    d = Dispatcher(CFG)
    d.ingest(fire1, T + 60)
    [first] = d.advance(T + 90)
    _, [crash_repeat] = restart(d, [fire1], T + 400)
    d.delivered(first, True, T + 90)
    [reminder] = d.advance(T + 690)
    d.delivered(reminder, True, T + 690)
    d.ingest(anomaly(metric="http.request.duration_ms", at=720, episode="e2"), T + 720)
    [changed] = d.advance(T + 750)
    d.delivered(changed, True, T + 750)
    d.ingest(anomaly(at=900, episode="e1", resolved=True, start=0), T + 900)
    d.ingest(anomaly(metric="http.request.duration_ms", at=900, episode="e2", resolved=True, start=660), T + 900)
    [resolved] = d.advance(T + 930)
    sent = [payloads.pagerduty(n, "rk", "logtide") for n in (first, crash_repeat, reminder, changed, resolved)]
    assert [p["event_action"] for p in sent] == ["trigger"] * 4 + ["resolve"]
    assert len({p["dedup_key"] for p in sent}) == 1  # one PagerDuty incident: a repeated trigger is idempotent
    other = Dispatcher(CFG)
    other.ingest(anomaly("search", at=60, episode="s1"), T + 60)
    [o] = other.advance(T + 90)
    assert payloads.pagerduty(o, "rk", "logtide")["dedup_key"] != sent[0]["dedup_key"]


def test_a_resolve_that_arrived_while_down_follows_the_repeat_of_the_page_with_its_id() -> None:
    # the page was delivered, not logged; the process was down when the incident resolved. The restart
    # replays both records: its first flush (as of before the resolve) repeats the page - under the page's
    # id - and the resolve follows under a new one.
    fire, res = anomaly(at=60, episode="e1"), anomaly(at=300, episode="e1", resolved=True, start=0)
    d = Dispatcher(CFG)
    d.ingest(fire, T + 65)
    [page] = d.advance(T + 95)
    r, [repeat] = restart(d, [fire, res], T + 400)
    assert repeat.status == "firing" and repeat.id == page.id
    assert [a.status for a in repeat.alerts] == [a.status for a in page.alerts] == ["firing"]
    r.delivered(repeat, True, T + 400)
    [resolved] = r.advance(T + 400)
    assert resolved.status == "resolved" and resolved.id != page.id
