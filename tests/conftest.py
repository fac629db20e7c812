"""Shared fixtures: virtual time for every engine test, a PostgreSQL schema of the test's own."""

from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from conveyor.testing import VirtualClock

from .services import drop_schema, postgres_url, unique_schema

T = TypeVar("T")


@pytest.fixture
def clock() -> VirtualClock:
    """A fresh virtual clock starting at 0."""
    return VirtualClock(wall_start_s=1_700_000_000.0)


@pytest.fixture
def run(clock: VirtualClock) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on the virtual clock."""
    return clock.run


@pytest.fixture
def pg() -> Iterator[str]:
    """A store URL on a schema of its own, dropped afterwards."""
    base = postgres_url()
    schema = unique_schema()
    yield f"{base}?schema={schema}"
    drop_schema(base, schema)
