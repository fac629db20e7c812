"""Counters shared by the processes of one mock API, so that ``/stats`` counts them all.

One process of Python answers about 2,000 requests a second before its own queueing shows in
the latency (on a 2-core machine: at concurrency 100 and 50 ms, answers took 53.5 ms on
average from one process and 51.5 ms from two). A mock API that is to be no benchmark's
bottleneck therefore runs several processes on one port (``SO_REUSEPORT``: the kernel spreads
the connections). Each keeps its own counters and copies them, after every request, into its
own row of a block of shared memory; ``/stats`` on any of them sums the rows, and
``/stats/reset`` on any of them zeroes every row and bumps a generation number that tells the
others to reset their own state (window, ids, draws) at their next request.

Layout: one float64 header cell (the generation), then one row of `FIELDS` per process. Times
are ``time.monotonic`` readings, which every process of the machine shares.
"""

from __future__ import annotations

import struct
from multiprocessing import shared_memory

from .stats import Counters, MockStats

__all__ = ["FIELDS", "SharedCounters"]

#: The cells of one process's row: the counters, then the first and last times (NaN: none).
FIELDS = Counters.__slots__
_CELL = struct.calcsize("d")
_NAN = float("nan")


class SharedCounters:
    """A block of shared memory with one row of counters per process.

    The parent makes it (``SharedCounters.create(processes)``) and passes `name` to each
    child, which attaches with ``SharedCounters.attach(name, processes, index)``.
    """

    def __init__(self, memory: shared_memory.SharedMemory, processes: int, index: int) -> None:
        self._memory = memory
        self.processes = processes
        self.index = index
        buf = memory.buf
        assert buf is not None
        self._cells = buf.cast("d")
        self.seen_generation = 0.0

    @classmethod
    def create(cls, processes: int) -> SharedCounters:
        """Make the block (in the parent); every row starts empty."""
        size = _CELL * (1 + processes * len(FIELDS))
        shared = cls(shared_memory.SharedMemory(create=True, size=size), processes, -1)
        shared._cells[0] = 0.0
        for row in range(processes):
            shared._zero(row)
        return shared

    @classmethod
    def attach(cls, name: str, processes: int, index: int) -> SharedCounters:
        """Open the parent's block (in a child) as the process of row `index`."""
        # A spawned child shares its parent's resource tracker, which the parent's unlink
        # settles; the child only detaches.
        return cls(shared_memory.SharedMemory(name=name), processes, index)

    @property
    def name(self) -> str:
        """The block's name, for `attach`."""
        return self._memory.name

    def _zero(self, row: int) -> None:
        start = 1 + row * len(FIELDS)
        for i, field in enumerate(FIELDS):
            self._cells[start + i] = _NAN if field in {"first_at", "last_at"} else 0.0

    @property
    def generation(self) -> float:
        """Bumped by every reset; a process whose `seen_generation` differs must reset."""
        return float(self._cells[0])

    def publish(self, counters: Counters) -> None:
        """Copy this process's counters into its row."""
        cells = self._cells
        start = 1 + self.index * len(FIELDS)
        for i, field in enumerate(FIELDS):
            value = getattr(counters, field)
            cells[start + i] = _NAN if value is None else float(value)

    def reset_all(self) -> None:
        """Zero every row and bump the generation (this process has reset itself)."""
        for row in range(self.processes):
            self._zero(row)
        self._cells[0] = self.generation + 1.0
        self.seen_generation = self.generation

    def total(self) -> MockStats:
        """Sum the rows: counts add up, the span runs from the first request to the last answer.

        ``peak_in_flight`` is the sum of each process's peak: an upper bound of the true peak.
        """
        cells = self._cells
        sums = dict.fromkeys(FIELDS, 0.0)
        firsts: list[float] = []
        lasts: list[float] = []
        for row in range(self.processes):
            start = 1 + row * len(FIELDS)
            for i, field in enumerate(FIELDS):
                value = float(cells[start + i])
                if field == "first_at":
                    if value == value:  # noqa: PLR0124 - NaN marks "no request yet"
                        firsts.append(value)
                elif field == "last_at":
                    if value == value:  # noqa: PLR0124 - NaN marks "no answer yet"
                        lasts.append(value)
                else:
                    sums[field] += value
        counts = {name: int(value) for name, value in sums.items() if name not in _TIMES}
        active_s = max(lasts) - min(firsts) if firsts and lasts else 0.0
        return MockStats(**counts, active_s=max(0.0, active_s))

    def close(self) -> None:
        """Detach from the block."""
        self._cells.release()
        self._memory.close()

    def unlink(self) -> None:
        """Free the block (the parent, once every child has stopped)."""
        self._memory.unlink()


_TIMES = frozenset({"first_at", "last_at"})
