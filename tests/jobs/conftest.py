"""Fixtures for the job tests: every store behind one factory, and a hand-moved wall clock."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.jobs.store import Store
from conveyor.jobs.stores.memory import MemoryStore
from conveyor.jobs.stores.sqlite import SqliteStore

# A PostgreSQL store joins the contract by adding its name here and a branch in `StoreKit`.
STORES = ["memory", "sqlite"]


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

    def open(self) -> Store:
        """A handle on the shared storage (memory: the same object; SQLite: a new connection)."""
        store: Store
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryStore(clock=self.wall)
            store = self._memory
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


@pytest.fixture
def wall() -> Wall:
    return Wall()


Run = Callable[..., object]
