"""Stream test fixtures: the test detector, and the real local Kafka for integration tests."""

from __future__ import annotations

import pytest

from tests.streams.zdetector import register

register()


@pytest.fixture(scope="session")
def kafka() -> str:
    """Bootstrap address of the real local Kafka (`logtide services up`), started if needed."""
    from logtide.services import ensure_up

    return ensure_up(kafka=True, elasticsearch=False)["kafka"]
