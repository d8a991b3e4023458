"""Local Kafka and Elasticsearch for development and tests (`logtide services up|down|status`).

Test fixtures call `ensure_up()` (idempotent) and read the addresses it returns; `is_kafka_up()` and
`is_es_up()` are cheap probes for skipping or asserting.
"""

from logtide.services.cli import services
from logtide.services.config import ServiceError, settings
from logtide.services.manager import (
    Status,
    ensure_up,
    es_url,
    is_es_up,
    is_kafka_up,
    kafka_bootstrap,
    status,
    stop,
)

__all__ = [
    "ServiceError",
    "Status",
    "ensure_up",
    "es_url",
    "is_es_up",
    "is_kafka_up",
    "kafka_bootstrap",
    "services",
    "settings",
    "status",
    "stop",
]

if __name__ == "__main__":
    services()
