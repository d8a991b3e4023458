"""Shared fixtures. Integration tests use the real local Kafka and Elasticsearch, starting them when
they are not up; when they cannot be started the tests fail (they are never skipped)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    """Addresses of the local services (`logtide services up`), started if needed."""
    from logtide.services import ensure_up

    return ensure_up()


@pytest.fixture(scope="session")
def kafka_bootstrap(services: dict[str, str]) -> str:
    return services["kafka"]


@pytest.fixture(scope="session")
def es_url(services: dict[str, str]) -> str:
    return services["elasticsearch"]


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Iterator[str]:
    """A short unique token for topic prefixes, index names and consumer groups. A test that also uses
    Kafka leaves no topic named with it behind: a long-lived development broker gathered 19,874
    partitions from test runs and ran out of file descriptors."""
    token = uuid.uuid4().hex[:10]
    yield token
    for name in ("kafka_bootstrap", "kafka"):  # `kafka`: the streams tests' own fixture, the same broker
        if name in request.fixturenames:
            delete_topics_named_with(request.getfixturevalue(name), token)
            break


def delete_topics_named_with(bootstrap: str, token: str) -> None:
    """Delete the topics whose names contain `token` (best effort, in a thread of its own: the test's
    event loop may still be open)."""

    async def delete() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if token in t]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    def run() -> None:
        try:
            asyncio.run(delete())
        except Exception as exc:  # cleanup must never fail a test that passed
            print(f"topic cleanup for {token} failed: {exc!r}")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
