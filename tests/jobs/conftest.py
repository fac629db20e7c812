"""Fixtures for the job tests: every store behind one factory, and a hand-moved wall clock."""

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.jobs.store import Store
from conveyor.jobs.stores.memory import MemoryStore
from conveyor.jobs.stores.postgres import PostgresStore
from conveyor.jobs.stores.sqlite import SqliteStore
from conveyor.testing import VirtualClock

from ..services import drop_schema, postgres_url, unique_schema

# Every store passes the same contract: a new one joins by adding its name here.
STORES = ["memory", "sqlite", "postgres"]


class Wall:
    """A wall clock the test moves by hand (Unix seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StoreKit:
    """Opens handles on one store's storage: each handle is what one process would hold."""

    def __init__(self, kind: str, tmp_path: Path, wall: Wall) -> None:
        self.kind = kind
        self.path = tmp_path / "jobs.db"
        self.wall = wall
        self._memory: MemoryStore | None = None
        self.opened: list[Store] = []
        self.schema: str | None = None
        self.pg_url = ""

    def open(self) -> Store:
        """A handle on the shared storage (memory: the same object; SQLite: a new connection)."""
        store: Store
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryStore(clock=self.wall)
            store = self._memory
        elif self.kind == "postgres":
            # Each test in its own schema: runs and tests never see each other's jobs.
            if self.schema is None:
                self.pg_url = postgres_url()
                self.schema = unique_schema()
            store = PostgresStore(f"{self.pg_url}?schema={self.schema}", clock=self.wall)
        else:
            store = SqliteStore(self.path, clock=self.wall)
        self.opened.append(store)
        return store

    @property
    def durable(self) -> bool:
        return self.kind != "memory"


@pytest.fixture(params=STORES)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    """One kit per store kind: the contract suite runs once for each."""
    k = StoreKit(request.param, tmp_path, Wall())
    yield k
    for store in k.opened:
        if isinstance(store, SqliteStore) and not store._closed:
            store._shutdown()
        if isinstance(store, PostgresStore):
            store.terminate()  # closed by `run` already, unless the test never ran a loop
    if k.schema is not None:
        drop_schema(k.pg_url, k.schema)


@pytest.fixture
def run(request: pytest.FixtureRequest, clock: VirtualClock) -> Callable[..., object]:
    """Virtual time, except for PostgreSQL: a network driver needs the real loop's time.

    (The virtual loop jumps to the next timer when no I/O is ready at once, which would fire
    a driver's timeouts while a query is on its way.) The contract tests move the store's
    clock by hand (`Wall`), so they read the same on either loop.
    """
    if "kit" in request.fixturenames and request.getfixturevalue("kit").kind == "postgres":
        kit: StoreKit = request.getfixturevalue("kit")

        async def closing(main: Coroutine[Any, Any, Any]) -> Any:
            try:
                return await main
            finally:
                for store in kit.opened:
                    await store.close()

        return lambda main: asyncio.run(closing(main))
    return clock.run


@pytest.fixture
def wall() -> Wall:
    return Wall()


Run = Callable[..., object]
