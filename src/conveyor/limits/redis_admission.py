"""`RedisAdmission`: a limiter's admission held in Redis, the same for every process.

The backend a `RedisLimiter` plugs into `Limiter` (`conveyor.limits.admission.Admission`):
the limiter's config, cost model and learning are the local ones; what is decided here, in
Lua scripts run atomically on Redis's clock, is who goes now, for all processes at once:

- **admission** (``lua/admit.lua``): every constraint in one call, in its shape (a window's
  log and pacer, a paced GCRA, a token bucket's TAT, a debt bucket for output tokens), every
  dimension at once, with the pause, the quota halt, the server's stated budgets, adopted
  limits and concurrency leases;
- **settling** (``lua/settle.lua``): a call's real cost corrects each dimension's booking;
- what one process learns reaches the others: a Retry-After pause (``lua/pause.lua``), a
  budget the headers state (``lua/cap.lua``), a limit the API states below ours
  (``lua/adopt.lua``: every process's constraints are scaled to it), an exhausted quota (a
  key every admission reads: it halts every process that asks within `HALT_S`).

Redis unreachable: admissions wait, never fail (`unavailable` says why); a release or a
settle lost meanwhile is made good by the lease's expiry or errs on the safe side.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from .. import _clock
from .constraints import DEBT_DIMENSIONS
from .slot import Slot

if TYPE_CHECKING:
    from ..errors import QuotaExhausted
    from .admission import Change
    from .constraints import Constraint, ServerCap
    from .costs import Cost
    from .limiter import Limiter
    from .redis_limiter import RedisLimits

__all__ = ["ADMITTING", "ADOPTED_S", "HALT_S", "OUTAGE_BACKOFF_S", "RedisAdmission", "RedisSlot"]

#: With costed dimensions, a caller told to wait asks Redis again after at most this long:
#: refunds settled by other processes free budget earlier than the wait Redis named, and
#: only this process's own are signalled (measured: 4 processes sharing Anthropic-like
#: buckets used 0.86 of them without it).
REFUND_POLL_S = 0.05

logger = logging.getLogger("conveyor.limits")

#: Waits while Redis is unreachable grow from the first to the last, doubling.
OUTAGE_BACKOFF_S = (0.05, 1.0)
#: Admissions one process asks Redis for at once (one round trip each; Redis runs them one
#: after the other, so the limits hold whatever this is). One at a time held each of four
#: busy workers to 120-160 admissions/s (6-8 ms per round trip through a loaded event loop):
#: together, at or under the 666 calls/s the benchmark's limits allow.
ADMITTING = 4
#: How long an adopted limit is held in Redis after a process last adopted it: a day, so a
#: limit raised on the API's side (or in our settings) is not shadowed forever.
ADOPTED_S = 86_400.0
#: How long a quota halt stays in Redis: every process asking meanwhile halts too. A process
#: started later tries again (and halts at its first refusal if the quota is still out).
HALT_S = 600.0


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions  # noqa: PLC0415 - the client only when Redis limits are used

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _figures(c: Constraint) -> list[Any]:
    """A constraint as admit.lua reads it: kind, limit, adopted field, five figures.

    A debt bucket's fifth figure, its spread's room, is the call's: `admit_args` puts it.
    """
    field = f"{c.unit}/{c.rate.period_s:g}"
    head: list[Any] = [repr(c.rate.limit), field]
    if c.bucket is not None:
        debt = 1 if c.unit in DEBT_DIMENSIONS else 0
        bucket = c.bucket
        return [
            "b",
            *head,
            repr(bucket.rate_per_s),
            repr(bucket.capacity),
            debt,
            repr(bucket.late_s),
            repr(bucket.reserve),
        ]
    pacer = c.pacer
    assert pacer is not None
    if c.window is not None:
        unit_costs = 1 if c.unit == "requests" else 0
        window = [repr(c.window.share), repr(c.window.window_s), repr(pacer.interval_s)]
        return ["w", *head, *window, unit_costs, 0]
    limit = repr(c.rate.limit)
    return ["p", *head, limit, 0, repr(pacer.interval_s), repr(pacer.tolerance_s), 0]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RedisSlot(Slot):
    """A `Slot` that knows its id in Redis (its lease, its log entries).

    `mark_sent` dates the admission again, in Redis, when the call goes out: the engine calls
    it as the attempt starts, and `conveyor.engine.sendtime` when the request's headers are sent.
    The new date is Redis's ``TIME`` when ``lua/redate.lua`` runs, never a date computed here:
    the script is sent after the headers were written, so Redis runs it after the request
    left, and the date can only be late (which keeps the call in its windows a little
    longer), never early. A date computed as "admitted at + time elapsed here" would not have
    that property: the event loop can read Redis's answer milliseconds after Redis admitted
    the call, and that gap would be lost.
    """

    __slots__ = ("_redating", "admission", "behind_s", "key", "produced")

    def __init__(
        self,
        limiter: Limiter,
        cost: Cost,
        admitted_at: float,
        units: dict[str, float],
        key: str,
        admission: RedisAdmission,
    ) -> None:
        super().__init__(limiter, cost, admitted_at, [], units)
        self.key = key
        #: What the answer took from each debt bucket so far (settle.lua's 'p' mode).
        self.produced: dict[str, float] = {}
        self.admission = admission
        self._redating = False
        #: How long before the re-dating's moment the call is dated: 0 when it goes out; its
        #: answer's dating (`Limiter.answer_date`) may name a moment already past.
        self.behind_s = 0.0

    def mark_sent(self, now: float) -> None:
        """Date the admission in Redis, on its clock, once the call has gone out."""
        if now <= self.admitted_at:
            return
        self.admitted_at = now
        # Redis's clock less what separates `now` from this moment here: the date can only
        # come out later than `now` (Redis runs the script later still), never earlier.
        self.behind_s = max(_clock.now() - now, 0.0)
        if self._redating:
            # A re-dating not yet sent: it will read Redis's clock after this moment anyway.
            return
        if self.admission.redate(self):
            self._redating = True

    def redate_sending(self) -> None:
        """The re-dating is about to be sent: a later `mark_sent` needs a new one."""
        self._redating = False


class RedisAdmission:
    """Admission for every process sharing a limiter's name in one Redis (module docstring)."""

    def __init__(
        self, limiter: Limiter, constraints: list[Constraint], *, redis: RedisLimits
    ) -> None:
        self._limiter = limiter
        self._learning = limiter.learning
        self._constraints = constraints
        self.redis = redis
        base = f"{redis.prefix}:{{{limiter.name}}}"
        #: The keys admit.lua reads and writes, in its order.
        self.keys = [f"{base}:{k}" for k in ("leases", "pause", "caps", "adopted", "halt")]
        #: The window constraints' logs (what a re-dating moves).
        self.logs: list[str] = []
        self._state_keys: list[tuple[str, str]] = []  # per constraint: costs, state
        for i, c in enumerate(constraints):
            log, costs, state = (f"{base}:{i}:{k}" for k in ("log", "costs", "state"))
            self.keys += [log, costs, state]
            self._state_keys.append((costs, state))
            if c.window is not None:
                self.logs.append(log)
        self._figures = [_figures(c) for c in constraints]
        self._concurrency = limiter.concurrency_limit or 0
        self.in_flight = 0
        self._waiting = 0
        self._process = os.urandom(6).hex()
        self._serial = 0
        self._admitting = asyncio.Semaphore(ADMITTING)
        #: Callers sleeping until told to ask again, or until something was freed here.
        self._sleepers: set[asyncio.Future[None]] = set()
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._halt_seen = False
        #: Why admissions are paused now (Redis unreachable), or ``None``.
        self.unavailable: str | None = None
        self._backoff_s = OUTAGE_BACKOFF_S[0]

    # -- admission ------------------------------------------------------------------------

    def admit_args(self, key: str, units: dict[str, float], time_arg: str = "") -> list[Any]:
        """admit.lua's ``ARGV`` for slot `key` booking `units` per dimension."""
        args: list[Any] = [key, self._concurrency, repr(self.redis.lease_s), time_arg]
        args += [len(self._constraints), len(units)]
        for dim, amount in units.items():
            args += [dim, repr(amount)]
        for c, figures in zip(self._constraints, self._figures, strict=True):
            args += [figures[0], repr(units[c.unit]), *figures[1:]]
            if c.spread is not None:
                args[-1] = repr(c.room())  # what this call's reservation needs
        return args

    @property
    def waiting(self) -> int:
        """Callers of this process waiting for Redis to admit them now."""
        return self._waiting

    def utilisation(self, now: float) -> dict[str, float]:
        """Not known here: the budget is in Redis, shared with every process."""
        del now
        return {}

    def ready(self, now: float, units: dict[str, float], cost: Cost) -> Slot | None:
        """Never at once: every admission asks Redis (`wait`)."""
        del now, units, cost
        return None

    async def wait(self, now: float, units: dict[str, float], cost: Cost) -> Slot:
        """Ask Redis until it admits `units` for every process; the slot."""
        del now
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        self._waiting += 1
        try:
            return await self._wait(loop, task, cancels, units, cost)
        finally:
            self._waiting -= 1

    async def _wait(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any] | None,
        cancels: int,
        units: dict[str, float],
        cost: Cost,
    ) -> Slot:
        """`wait`'s turn: one caller of this process at a time asks Redis."""
        async with self._admitting:
            while True:
                if self._learning.halted is not None:
                    raise self._learning.halted
                self._serial += 1
                key = f"{self._process}:{self._serial}"
                self._limiter.costs.refresh(units, cost)  # what was learned while it waited
                told = await self.try_once(key, units)
                if task is not None and task.cancelling() > cancels:
                    # Cancelled while the command was written, and the cancellation was lost
                    # on the way (redis-py sends through asyncio.wait_for, which before
                    # Python 3.12 returns a result that is ready instead of raising): honour
                    # it here, and give back what was admitted meanwhile.
                    if told is None:
                        self._granted(key, units, cost, loop.time()).give_back()
                    raise asyncio.CancelledError
                if told is None:
                    return self._granted(key, units, cost, loop.time())
                if self._limiter.config.costed:
                    # Another process's refund (an answer cheaper than its reservation) may
                    # let this call in before the wait Redis named: ask again soon.
                    told = min(told, REFUND_POLL_S)
                await self._sleep(loop, told)

    async def try_once(self, key: str, units: dict[str, float]) -> float | None:
        """One admission attempt: ``None`` if admitted, else seconds to wait.

        Raises `QuotaExhausted` if a process halted the limiter, `ConfigError` if a limit
        adopted since makes the call too large ever to be admitted.
        """
        args = self.admit_args(key, units, self.redis.time_arg())
        try:
            reply = await self.redis.run_script("admit", self.keys, args)
        except _unreachable_errors() as exc:
            return self._outage(exc)
        if self.unavailable is not None:
            logger.warning("limiter %s: Redis is reachable again; admitting", self._limiter.name)
            self.unavailable = None
            self._backoff_s = OUTAGE_BACKOFF_S[0]
        verdict = int(reply[0])
        if verdict == 1:
            return None
        if verdict == 0:
            return max(float(reply[1]), 0.0)
        if verdict == -1:
            self._halt_seen = True
            message = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            self._learning.halt(message)
            assert self._learning.halted is not None
            raise self._learning.halted
        c = self._constraints[int(reply[1])]
        most = float(reply[2])
        raise self._limiter.never_admitted(c.unit, units[c.unit], most, c.window is not None)

    def _outage(self, exc: BaseException) -> float:
        if self.unavailable is None:
            self.unavailable = (
                f"Redis at {self.redis.url} is unreachable ({type(exc).__name__}: {exc});"
                f" admissions through limiter {self._limiter.name!r} wait until it is back"
            )
            logger.warning("limiter %s: %s", self._limiter.name, self.unavailable)
            self._backoff_s = OUTAGE_BACKOFF_S[0]
        wait = self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, OUTAGE_BACKOFF_S[1])
        return wait

    def _granted(self, key: str, units: dict[str, float], cost: Cost, now: float) -> Slot:
        self._learning.started(now)
        self.in_flight += 1
        self._limiter.admitted += 1
        slot = RedisSlot(self._limiter, cost, now, units, key, self)
        if self._concurrency:
            self._held.add(key)
            if self._renewer is None or self._renewer.done():
                self._renewer = asyncio.get_running_loop().create_task(self._renew())
        return slot

    async def _renew(self) -> None:
        """Renew this process's leases every third of a lease, while it holds any."""
        lease_s = self.redis.lease_s
        while self._held:
            await asyncio.sleep(lease_s / 3)
            if not self._held:
                return
            args = [repr(lease_s), self.redis.time_arg(), *sorted(self._held)]
            try:
                await self.redis.run_script("renew", self.keys[:1], args)
            except _unreachable_errors() as exc:
                logger.warning("limiter %s: renewing leases failed (%s)", self._limiter.name, exc)

    def _spawn(self, coro: Any, what: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except _unreachable_errors() as exc:
                name = self._limiter.name
                logger.warning("limiter %s: %s failed, Redis unreachable (%s)", name, what, exc)

        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sleep(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        """Sleep `seconds`, or until `_wake`: a plain future, so a cancellation always ends it.

        (``asyncio.timeout`` around an event could turn a cancellation that came as the
        timeout fired into a `TimeoutError`, and the caller would have gone on asking.)
        """
        sleeper: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, sleeper)
        self._sleepers.add(sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            self._sleepers.discard(sleeper)

    def _wake(self) -> None:
        for sleeper in self._sleepers:
            _resolve(sleeper)

    async def drain(self) -> None:
        """Wait for pending background writes (releases, settles) to reach Redis."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- a call's facts -------------------------------------------------------------------

    def redate(self, slot: RedisSlot) -> bool:
        """Move `slot`'s log entries to Redis's now, in the background (see redate.lua).

        Returns whether a re-dating was scheduled (only limiters with windows keep logs).
        """
        if not self.logs:
            return False
        self._spawn(self._redate(slot), "dating a call")
        return True

    async def _redate(self, slot: RedisSlot) -> None:
        slot.redate_sending()
        args = [slot.key, self.redis.time_arg(), repr(slot.behind_s)]
        await self.redis.run_script("redate", self.logs, args)

    def settle_args(
        self,
        key: str,
        changes: dict[str, Change],
        produced: dict[str, float] | None = None,
        time_arg: str | None = None,
    ) -> tuple[list[str], list[Any]]:
        """settle.lua's ``KEYS`` and ``ARGV`` for slot `key`'s `changes` per dimension.

        `produced`: what the slot's answer took from each debt bucket so far (updated here).
        `time_arg`: the time to settle at ('' or None: Redis's TIME, or the test clock's).
        """
        keys: list[str] = []
        args: list[Any] = [key, self.redis.time_arg() if time_arg is None else time_arg]
        taken = produced if produced is not None else {}
        for c, pair in zip(self._constraints, self._state_keys, strict=True):
            change = changes.get(c.unit)
            if change is None:
                continue
            keys += pair
            cost, delta = float(change[0]), float(change[1])
            if c.bucket is not None and c.bucket.debt:
                amount = cost - taken.get(c.unit, 0.0)
                taken[c.unit] = cost
                args += ["p", repr(cost), repr(amount), repr(delta)]
            else:
                args += ["s", repr(cost), repr(delta), repr(delta)]
        return keys, args

    def settle(self, slot: Slot, changes: dict[str, Change]) -> None:
        """Correct every process's bookings of `slot`'s call; a refund may let a caller in."""
        if not isinstance(slot, RedisSlot):
            return
        keys, args = self.settle_args(slot.key, changes, slot.produced)
        if keys:
            self._spawn(self.redis.run_script("settle", keys, args), "settling a cost")
        if any(delta < 0 for _, delta in changes.values()):
            self._wake()

    def released(self, slot: Slot) -> None:
        """Free the call's concurrency lease, for every process."""
        self.in_flight -= 1
        if isinstance(slot, RedisSlot) and slot.key in self._held:
            self._held.discard(slot.key)
            self._spawn(self.redis.client.zrem(self.keys[0], slot.key), "releasing a slot")
        self._wake()

    # -- what learning changed, for every process -----------------------------------------

    def changed(self) -> None:
        """Nothing to do: what admission depends on is read from Redis at each attempt."""

    def halted(self, error: QuotaExhausted) -> None:
        """Halt every process asking within `HALT_S`; wake this one's callers to fail."""
        if not self._halt_seen:
            self._halt_seen = True
            halt = self.keys[4]
            write = self.redis.client.set(halt, error.api_message, ex=int(HALT_S), nx=True)
            self._spawn(write, "sharing a quota halt")
        self._wake()

    def paused(self, seconds: float) -> None:
        """Pause every process for `seconds` of Redis's time."""
        args = [repr(float(seconds)), self.redis.time_arg()]
        self._spawn(self.redis.run_script("pause", self.keys[1:2], args), "pausing")

    def capped(self, dim: str, cap: ServerCap) -> None:
        """Hold every process to what the server said is left of `dim`."""
        until_s = max(cap.until - _clock.now(), 0.0)
        args = [dim, repr(cap.remaining), repr(until_s), repr(cap.refill_per_s)]
        args.append(self.redis.time_arg())
        self._spawn(self.redis.run_script("cap", self.keys[2:3], args), "sharing a budget")

    def adopted(self, constraint: Constraint, limit: float) -> None:
        """Hold every process to the API's stricter `limit` for `constraint`'s dimension."""
        index = next(i for i, c in enumerate(self._constraints) if c is constraint)
        self._figures[index] = _figures(constraint)
        field = self._figures[index][2]
        args = [field, repr(float(limit)), repr(ADOPTED_S)]
        self._spawn(self.redis.run_script("adopt", self.keys[3:4], args), "sharing a limit")
