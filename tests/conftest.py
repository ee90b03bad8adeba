"""Shared fixtures: real broker and MongoDB-wire server, isolated per test by name prefix / database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests import infra


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if infra.INFRA.used:
        terminalreporter.write_sep("-", "infrastructure used")
        for name, how in sorted(infra.INFRA.used.items()):
            terminalreporter.write_line(f"{name}: {how}")


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """URL of a real RabbitMQ (see tests/infra.py for the order of choices)."""
    with infra.rabbitmq() as url:
        yield url


@pytest.fixture
def broker_control(amqp_url: str) -> str:
    """For tests that drive the broker with the local ``rabbitmqctl``: fails (never skips) with what is
    needed when the chosen broker is not the node ``rabbitmqctl`` on this machine controls."""
    if failure := infra.broker_control_failure(amqp_url):
        pytest.fail(failure, pytrace=False)
    return amqp_url


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """URL of a real MongoDB-wire server."""
    with infra.mongodb() as url:
        yield url


@pytest.fixture
def unique_name() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def amqp_prefix(unique_name: str) -> str:
    """A name prefix for every exchange and queue a test declares (``t<hex>.``)."""
    return f"t{unique_name}."


@pytest.fixture
async def mongo_db(mongodb_url: str, unique_name: str) -> AsyncIterator[Any]:
    """A fresh database on the real server, dropped after the test."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        mongodb_url, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    db = client[f"test_{unique_name}"]
    try:
        yield db
    finally:
        await client.drop_database(db.name)
        await client.close()
