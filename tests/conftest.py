"""Shared fixtures: virtual time for every engine test."""

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from conveyor.testing import VirtualClock

T = TypeVar("T")


@pytest.fixture
def clock() -> VirtualClock:
    """A fresh virtual clock starting at 0."""
    return VirtualClock(wall_start_s=1_700_000_000.0)


@pytest.fixture
def run(clock: VirtualClock) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on the virtual clock."""
    return clock.run
