"""Shared fixtures. Integration tests use the real local Kafka and Elasticsearch, starting them when
they are not up; when they cannot be started the tests fail (they are never skipped)."""

from __future__ import annotations

import uuid

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
def unique() -> str:
    """A short unique token for topic prefixes, index names and consumer groups."""
    return uuid.uuid4().hex[:10]
