"""logtide: an event-streaming log and metrics pipeline.

`from logtide import subscribe`: anomalies as typed, validated objects (see `logtide.subscriber`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Subscription", "__version__", "subscribe"]


def __getattr__(name: str) -> Any:
    # imported on first use, so `logtide --help` does not load Kafka clients and models
    if name in ("subscribe", "Subscription"):
        from logtide import subscriber

        return getattr(subscriber, name)
    raise AttributeError(f"module 'logtide' has no attribute {name!r}")
