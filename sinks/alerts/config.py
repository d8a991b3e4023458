"""The `alerts:` section: routing tree, receivers, inhibition, flapping and delivery settings.

Shaped like Alertmanager's configuration so its users recognise it; validated at start, and every
error names its key path (a bad regex, a receiver name no receiver has, a secret that is not set).
Secrets (webhook secrets, routing keys, Slack URLs) are `SecretStr`: masked in every output.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from logtide.sinks.alerts.model import Matcher
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def parse_duration(v: Any) -> float:
    """Seconds from a number or an Alertmanager-style duration: 30s, 5m, 4h, 1h30m, 500ms."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        if v < 0:
            raise ValueError("a duration cannot be negative")
        try:
            out = float(v)
        except OverflowError:  # an integer of hundreds of digits (found by fuzzing)
            raise ValueError("a duration too large") from None
    else:
        m = _DURATION.match(str(v).strip()) if isinstance(v, str) and v.strip() else None
        if m is None:
            raise ValueError(f"not a duration (like 30s, 5m, 4h, 1h30m): {str(v)[:80]!r}")
        h, mi, s, ms = (float(x) if x else 0.0 for x in m.groups())
        out = h * 3600 + mi * 60 + s + ms / 1000
    if not math.isfinite(out):
        raise ValueError("a duration too large")
    return out


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _matchers(v: list[str]) -> list[str]:
    for i, text in enumerate(v):
        try:
            Matcher.parse(text)
        except ValueError as exc:
            raise ValueError(f"[{i}] {exc}") from None
    return v


class RouteConfig(_Section):
    """One node of the routing tree; unset settings are inherited from the parent."""

    receiver: str | None = None
    matchers: list[str] = Field(default_factory=list, description='Like severity="critical", service=~"pay.*".')
    group_by: list[str] | None = Field(default=None, description='Label names; ["..."] groups by all labels.')
    group_wait: float | None = None
    group_interval: float | None = None
    repeat_interval: float | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[RouteConfig] = Field(default_factory=list)

    _m = field_validator("matchers")(_matchers)

    @field_validator("group_wait", "group_interval", "repeat_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)


class WebhookConfig(_Section):
    """Alertmanager webhook payload v4, signed as Standard Webhooks specifies when a secret is set."""

    url: SecretStr
    secrets: list[SecretStr] = Field(
        default_factory=list, description="whsec_<base64> keys; several sign in parallel during rotation."
    )
    send_resolved: bool = True
    max_alerts: int = Field(default=0, ge=0, description="0: all alerts; otherwise truncate (truncatedAlerts).")

    @field_validator("secrets")
    @classmethod
    def _whsec(cls, v: list[SecretStr]) -> list[SecretStr]:
        import base64
        import binascii

        for i, s in enumerate(v):
            raw = s.get_secret_value()
            try:
                base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"[{i}] not a whsec_<base64> secret") from None
        return v


class SlackConfig(_Section):
    url: SecretStr = Field(description="Incoming webhook URL (a secret).")
    send_resolved: bool = True
    channel: str | None = None


class PagerDutyConfig(_Section):
    routing_key: SecretStr
    url: str = "https://events.pagerduty.com/v2/enqueue"
    send_resolved: bool = True
    source: str = "logtide"


class AlertmanagerConfig(_Section):
    """Push alerts to an Alertmanager's POST /api/v2/alerts (it then routes them itself)."""

    url: str = Field(description="Base URL, e.g. http://127.0.0.1:9093")
    send_resolved: bool = True
    resend_interval: float = Field(default=60.0, gt=0, description="Firing alerts are re-sent this often.")

    @field_validator("resend_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class ReceiverConfig(_Section):
    name: str = Field(min_length=1)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    pagerduty_configs: list[PagerDutyConfig] = Field(default_factory=list)
    alertmanager_configs: list[AlertmanagerConfig] = Field(default_factory=list)


class InhibitRule(_Section):
    """While an alert matching `source_matchers` fires, alerts matching `target_matchers` with the same
    values of the `equal` labels are not notified."""

    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    _s = field_validator("source_matchers")(_matchers)
    _t = field_validator("target_matchers")(_matchers)


class StaticSilenceConfig(_Section):
    """A silence written in the configuration file: in force while the file says so (a reload adds,
    changes or ends it); `logtide alerts silence` manages the others, in their topic."""

    matchers: list[str] = Field(min_length=1)
    starts_at: datetime | None = Field(default=None, description="Unset: from the start.")
    ends_at: datetime | None = Field(default=None, description="Unset: until removed from the file.")
    created_by: str = "config"
    comment: str = ""

    _m = field_validator("matchers")(_matchers)

    @model_validator(mode="after")
    def _order(self) -> StaticSilenceConfig:
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class FlappingConfig(_Section):
    """An alert that changed state at least `changes` times in its last `window` evaluations is held."""

    enabled: bool = True
    window: PositiveInt = 20
    changes: PositiveInt = 4


class DeliveryConfig(_Section):
    """Per receiver: token bucket, retries with full-jitter exponential backoff, breaker, queue bound."""

    rate_per_second: PositiveFloat = 1.0
    burst: PositiveInt = 5
    max_attempts: PositiveInt = 6
    backoff_initial_seconds: PositiveFloat = 0.5
    backoff_max_seconds: PositiveFloat = 60.0
    timeout_seconds: PositiveFloat = 10.0
    breaker_failures: PositiveInt = 5
    breaker_reset_seconds: PositiveFloat = 30.0
    queue_size: PositiveInt = 1000


def _default_route() -> RouteConfig:
    return RouteConfig(receiver="default", group_by=["service", "metric"])


class AlertsConfig(_Section):
    """The `alerts` section (`logtide alerts`, and `logtide run`/`demo` when receivers are set)."""

    enabled: bool = True
    group_id: str = "logtide-alerts"
    external_url: str = "http://localhost"
    static_labels: dict[str, str] = Field(default_factory=dict)
    route: RouteConfig = Field(default_factory=_default_route)
    receivers: list[ReceiverConfig] = Field(default_factory=lambda: [ReceiverConfig(name="default")])
    inhibit_rules: list[InhibitRule] = Field(
        default_factory=lambda: [
            InhibitRule(source_matchers=['severity="critical"'], target_matchers=['severity="warning"'],
                        equal=["service", "metric"])
        ]
    )
    silences: list[StaticSilenceConfig] = Field(default_factory=list)
    flapping: FlappingConfig = Field(default_factory=FlappingConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    resolve_timeout: float = Field(
        default=3600.0, description="Records without an episode (older producers) resolve after this quiet time."
    )
    metrics_port: int = Field(default=9110, ge=0, le=65535, description="Prometheus /metrics; 0 disables.")
    tick_seconds: PositiveFloat = Field(default=1.0, description="How often the live process checks group timers.")
    leader_session_timeout: float = Field(
        default=10.0, description="How soon a standby instance takes over from a leader that went away."
    )
    replay_lookback: float = Field(
        default=6 * 3600.0, description="On start, anomalies this far back rebuild the open alerts."
    )
    shards: PositiveInt = Field(
        default=1, description="Partitions of the notification-log topic: instances of `logtide alerts` share "
        "them (Kafka group assignment); each owns the groups of its shards. 1: one leader, the others stand by.",
    )
    shard_by: list[str] = Field(
        default_factory=lambda: ["service"], min_length=1,
        description="Labels that pick an alert's shard; with shards > 1 every route groups by them and every "
        "inhibition rule's equal includes them.",
    )

    @field_validator("resolve_timeout", "replay_lookback", "leader_session_timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _receivers_known(self) -> AlertsConfig:
        names = [r.name for r in self.receivers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"receivers: duplicate names {sorted(dup)}")
        if self.route.receiver is None:
            raise ValueError("route.receiver: the root route needs a receiver")
        if self.route.matchers:
            raise ValueError("route.matchers: the root route matches everything; put matchers on child routes")

        def walk(r: RouteConfig, path: str) -> None:
            if r.receiver is not None and r.receiver not in names:
                raise ValueError(f"{path}.receiver: unknown receiver {r.receiver!r} (known: {', '.join(names)})")
            for i, c in enumerate(r.routes):
                walk(c, f"{path}.routes[{i}]")

        walk(self.route, "route")
        from logtide.sinks.alerts.shard import check

        check(self)
        return self


RouteConfig.model_rebuild()
