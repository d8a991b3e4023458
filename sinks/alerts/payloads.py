"""What each receiver is sent, built from a Notification (pure; the HTTP is in delivery.py).

- webhook: Alertmanager's webhook payload version 4, so anything that accepts Alertmanager webhooks
  accepts ours; logtide's value, expected value, band, score and context are annotations.
- slack: an incoming-webhook message, `text` (fallback) plus `blocks`.
- pagerduty: Events API v2, trigger or resolve, `dedup_key` derived from the group.
- alertmanager: the body of `POST /api/v2/alerts` (a list of postable alerts).
"""

from __future__ import annotations

import hashlib
from typing import Any

from logtide.sinks.alerts.dispatch import Notification
from logtide.sinks.alerts.model import Alert, iso

PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _alert_v4(a: Alert) -> dict[str, Any]:
    return {
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": iso(a.starts_at),
        "endsAt": iso(a.ends_at),
        "generatorURL": a.generator_url,
        "fingerprint": a.fp,
    }


def webhook_v4(n: Notification, external_url: str, max_alerts: int = 0) -> dict[str, Any]:
    alerts = n.alerts if not max_alerts else n.alerts[:max_alerts]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": len(n.alerts) - len(alerts),
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": _common([a.labels for a in n.alerts]),
        "commonAnnotations": _common([a.annotations for a in n.alerts]),
        "externalURL": external_url,
        "alerts": [_alert_v4(a) for a in alerts],
    }


def title(n: Notification) -> str:
    firing = sum(1 for a in n.alerts if not a.resolved())
    labels = " ".join(f"{k}={v}" for k, v in sorted(n.group_labels.items()))
    tag = f"FIRING:{firing}" if n.status == "firing" else "RESOLVED"
    return f"[{tag}] {labels}".strip()


def slack(n: Notification, channel: str | None = None) -> dict[str, Any]:
    lines = [f"• {'✅' if a.resolved() else '🔥'} {a.annotations.get('summary', a.labels.get('metric', ''))}"
             for a in n.alerts[:20]]
    body: dict[str, Any] = {
        "text": title(n),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title(n)[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000] or "-"}},
        ],
    }
    if channel:
        body["channel"] = channel
    return body


def dedup_key(n: Notification) -> str:
    return hashlib.sha256(f"{n.receiver}|{n.group_key}".encode()).hexdigest()[:32]


def pagerduty(n: Notification, routing_key: str, source: str) -> dict[str, Any]:
    if n.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(n)}
    sev = "info"
    for a in n.alerts:
        s = PD_SEVERITY.get(a.labels.get("severity", ""), "info")
        if ["info", "warning", "error", "critical"].index(s) > ["info", "warning", "error", "critical"].index(sev):
            sev = s
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(n),
        "payload": {
            "summary": title(n)[:1024],
            "source": source,
            "severity": sev,
            "timestamp": iso(min(a.starts_at for a in n.alerts)),
            "custom_details": {"groupKey": n.group_key, "alerts": [_alert_v4(a) for a in n.alerts[:20]]},
        },
    }


def alertmanager(alerts: list[Alert], firing_ttl: float, now: float) -> list[dict[str, Any]]:
    """Postable alerts. A firing alert ends `firing_ttl` from now unless re-sent (we re-send while it
    fires, as Prometheus does), so Alertmanager resolves it if we go away; a resolved one carries its end."""
    out = []
    for a in alerts:
        d: dict[str, Any] = {"labels": a.labels, "annotations": a.annotations, "startsAt": iso(a.starts_at),
                             "generatorURL": a.generator_url,
                             "endsAt": iso(a.ends_at if a.resolved() else max(now, a.starts_at) + firing_ttl)}
        out.append(d)
    return out
