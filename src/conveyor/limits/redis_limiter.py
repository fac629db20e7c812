"""`RedisLimits` and `RedisLimiter`: one limiter's budget shared by every process, in Redis.

>>> limits = RedisLimits("redis://127.0.0.1:6379/0")  # doctest: +SKIP
>>> openai = limits.limiter("openai", requests_per_minute=500, tokens_per_minute=200_000,
...                         window_s=1)  # doctest: +SKIP

A `RedisLimiter` is a `Limiter` (same arguments, same ``acquire``/``Slot`` API), whose state
lives in Redis under ``conveyor:limit:{name}:*``: every process that makes a limiter of the
same name and URL shares one budget. What is shared, and how:

- **Admission** is one Lua script (``lua/admit.lua``) over all the limiter's constraints at
  once: requests and tokens, each with its pacer and, with ``window_s``, its exact sliding log;
  the Retry-After pause; the header-learned budgets; the concurrency leases. It runs
  atomically on Redis's clock (``TIME``), never the callers': machines whose clocks disagree
  cannot break the limit. The guarantee is the local limiter's: no sliding window of
  ``window_s`` admits more than its share (``tests/limits/test_redis_properties.py``).
- **Settling** (the real token cost) corrects the shared log and pacer (``lua/settle.lua``).
- **Retry-After** pauses every process (``lua/pause.lua``); **rate-limit headers** seen by one
  process hold every process to the budget they state (``lua/cap.lua``).
- **Concurrency** across processes uses leases: each admitted call holds a lease of
  ``lease_s``, renewed while the call runs; a killed process's slots come back when its leases
  lapse, within one lease period.
- **Redis unreachable**: admissions wait (they never fail), the limiter logs why once and
  exposes it as `unavailable`, and work resumes when Redis answers again. A release or a
  settle lost meanwhile is made good by the lease's expiry (concurrency) or errs on the safe
  side (a refund not given back).

Within one process, callers are admitted first come, first served; across processes, each
process's head of queue asks Redis in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from .. import _clock
from .._urls import hide_secrets, shown_url
from ..errors import CircuitOpen, ConfigError
from .limiter import Limiter
from .slot import Slot

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..jobs.app import App
    from .costs import Cost

__all__ = ["RedisLimiter", "RedisLimits", "RedisSlot", "share_limits"]

logger = logging.getLogger("conveyor.limits")

#: Waits while Redis is unreachable grow from the first to the last, doubling.
OUTAGE_BACKOFF_S = (0.05, 1.0)
#: Admissions one process asks Redis for at once (one round trip each; Redis runs them one
#: after the other, so the limits hold whatever this is). One at a time held each of four
#: busy workers to 120-160 admissions/s (6-8 ms per round trip through a loaded event loop):
#: together, at or under the 666 calls/s the benchmark's limits allow.
ADMITTING = 4


@cache
def script(name: str) -> str:
    """The Lua source of ``lua/<name>.lua``."""
    return (resources.files("conveyor.limits") / "lua" / f"{name}.lua").read_text("utf-8")


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions  # noqa: PLC0415 - the client only when Redis limits are used

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisSlot(Slot):
    """A `Slot` that knows its id in Redis (its lease, its log entries).

    `mark_sent` dates the admission again, in Redis, when the call goes out: the engine calls
    it as the attempt starts, and `conveyor.http.sendtime` when the request's headers are sent.
    The new date is Redis's ``TIME`` when ``lua/redate.lua`` runs, never a date computed here:
    the script is sent after the headers were written, so Redis runs it after the request
    left, and the date can only be late (which keeps the call in its windows a little
    longer), never early. A date computed as "admitted at + time elapsed here" would not have
    that property: the event loop can read Redis's answer milliseconds after Redis admitted
    the call, and that gap would be lost.
    """

    __slots__ = ("_redating", "behind_s", "key")

    def __init__(self, limiter: RedisLimiter, cost: float, admitted_at: float, key: str) -> None:
        units = {"requests": 1.0, **limiter.costs.reserve(cost)}
        super().__init__(limiter, cost, admitted_at, [], units)
        self.key = key
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
        limiter = self.limiter
        assert isinstance(limiter, RedisLimiter)
        if limiter.redate(self):
            self._redating = True

    def redate_sending(self) -> None:
        """The re-dating is about to be sent: a later `mark_sent` needs a new one."""
        self._redating = False


class RedisLimits:
    """The Redis that holds shared limits, and a factory of limiters kept there.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS), ``redis://:password@host...``
            with a password; `url` keeps it as it may be shown (`conveyor._urls.shown_url`).
        lease_s: how long a concurrency slot outlives a process that stopped renewing it.
        prefix: the keys' prefix (one per application sharing a Redis).
        client: an existing ``redis.asyncio.Redis`` (then `url` only names it in messages).
        clock: tests only: a virtual clock sent to the scripts instead of Redis's ``TIME``.
    """

    def __init__(
        self,
        url: str,
        *,
        lease_s: float = 10.0,
        prefix: str = "conveyor:limit",
        client: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not (isinstance(lease_s, int | float) and math.isfinite(lease_s) and lease_s > 0):
            msg = f"RedisLimits(lease_s={lease_s!r}): the lease is seconds > 0, e.g. 10"
            raise ConfigError(msg)
        #: The URL as messages, logs and a job's step show it: its password taken out.
        self.url = shown_url(url)
        self.lease_s = float(lease_s)
        self.prefix = prefix
        self.clock = clock
        if client is None:
            try:
                import redis.asyncio  # noqa: PLC0415 - the client only when used
            except ImportError:  # pragma: no cover - depends on the install
                msg = "Redis limits need the redis package: pip install 'conveyor[redis]'"
                raise ConfigError(msg) from None
            try:
                client = redis.asyncio.from_url(  # type: ignore[no-untyped-call]
                    url, socket_connect_timeout=1.0, socket_timeout=2.0, health_check_interval=5
                )
            except ValueError as exc:  # a port that is not a number, an unencoded "[", ...
                msg = (
                    f"cannot use Redis at {self.url}: {hide_secrets(str(exc), url)}; write it"
                    " as redis://[:PASSWORD@]HOST[:PORT][/DB], the password percent-encoded"
                )
                raise ConfigError(msg) from None
        self.client = client
        self._scripts: dict[str, Any] = {}

    def run_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``lua/<name>.lua`` (sent once, then by its hash; re-sent after a restart)."""
        found = self._scripts.get(name)
        if found is None:
            found = self._scripts[name] = self.client.register_script(script(name))
        return found(keys=list(keys), args=list(args))

    def time_arg(self) -> str:
        """The scripts' time argument: '' (Redis's clock) unless a test drives one."""
        return "" if self.clock is None else repr(self.clock())

    def limiter(self, name: str, **limits: Any) -> RedisLimiter:
        """A `RedisLimiter` named `name` (`Limiter`'s arguments) sharing this Redis."""
        return RedisLimiter(name, redis=self, **limits)

    async def check(self) -> str | None:
        """None if Redis answers a PING now, else why not (one line, no password)."""
        try:
            await self.client.ping()
        except Exception as exc:  # any way a PING fails (connection, protocol, loading...)
            return f"Redis at {self.url} is unreachable ({type(exc).__name__}: {exc})"
        return None

    async def aclose(self) -> None:
        """Close the connections."""
        await self.client.aclose()


class RedisLimiter(Limiter):
    """A `Limiter` whose budget lives in Redis, shared by every process (module docstring).

    Args:
        name: the limiter's name; processes share a budget by using the same name.
        redis: the `RedisLimits` that holds it.
        **limits: as `Limiter` (``concurrency="auto"`` is per process, so not offered here).
    """

    def __init__(self, name: str, *, redis: RedisLimits, **limits: Any) -> None:
        if limits.get("concurrency") == "auto":
            msg = (
                f"RedisLimiter({name!r}, concurrency='auto'): adaptive concurrency is found"
                " per process; give a number shared by all processes, e.g. concurrency=50"
            )
            raise ConfigError(msg)
        super().__init__(name, **limits)
        self.redis = redis
        base = f"{redis.prefix}:{{{name}}}"
        self._keys = [f"{base}:leases", f"{base}:pause", f"{base}:caps"]
        self._args: list[Any] = []
        self._token_keys: list[str] = []
        self._logs: list[str] = []
        self._token_intervals: list[float] = []
        for i, c in enumerate(self._constraints):
            keys = [f"{base}:{i}:log", f"{base}:{i}:costs", f"{base}:{i}:tat"]
            self._keys += keys
            share = c.window.share if c.window is not None else 0.0
            # The local limiter's window, widened by its margin (`WINDOW_MARGIN`).
            window = c.window.window_s if c.window is not None else 0.0
            pacer = c.pacer
            if pacer is None:
                msg = (
                    f"RedisLimiter({name!r}, bucket_s=...): token buckets are not held in Redis yet"
                )
                raise ConfigError(msg)
            self._args += [c.unit, repr(share), repr(window), repr(pacer.interval_s)]
            self._args.append(repr(pacer.tolerance_s))
            if c.window is not None:
                self._logs.append(keys[0])
            if c.unit == "tokens":
                self._token_keys += keys
                self._token_intervals.append(pacer.interval_s)
        self._process = os.urandom(6).hex()
        self._serial = 0
        self._admitting = asyncio.Semaphore(ADMITTING)
        self._released: asyncio.Event | None = None
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        #: Why admissions are paused now (Redis unreachable), or ``None``.
        self.unavailable: str | None = None
        self._backoff_s = OUTAGE_BACKOFF_S[0]

    def __repr__(self) -> str:
        return f"Redis{super().__repr__()}"

    # -- admission ------------------------------------------------------------------------

    async def admit(self, cost: Cost = 1.0) -> Slot:
        """Wait until Redis admits a call costing `cost` for every process; return its slot."""
        units = self.costs.reserve(cost)
        cost = next(iter(units.values()), 1.0)
        if self.halted is not None:
            raise self.halted
        loop = asyncio.get_running_loop()
        if self.breaker is not None:
            wait = self.breaker.wait_s(loop.time())
            if wait > 0:
                raise CircuitOpen(self.name, wait)
        if self._released is None:
            self._released = asyncio.Event()
        async with self._admitting:
            while True:
                if self.halted is not None:
                    raise self.halted
                self._serial += 1
                key = f"{self._process}:{self._serial}"
                told = await self._try(key, cost)
                if told is None:
                    return self._granted(key, cost, loop.time())
                self._released.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(told):
                        await self._released.wait()

    async def _try(self, key: str, cost: float) -> float | None:
        """One admission attempt: ``None`` if admitted, else seconds to wait."""
        args = self.admit_args(key, cost, self.redis.time_arg())
        try:
            admitted, value = await self.redis.run_script("admit", self.keys, args)
        except _unreachable_errors() as exc:
            return self._outage(exc)
        if self.unavailable is not None:
            logger.warning("limiter %s: Redis is reachable again; admitting", self.name)
            self.unavailable = None
            self._backoff_s = OUTAGE_BACKOFF_S[0]
        if int(admitted) == 1:
            return None
        return max(float(value), 0.0)

    def _outage(self, exc: BaseException) -> float:
        if self.unavailable is None:
            self.unavailable = (
                f"Redis at {self.redis.url} is unreachable ({type(exc).__name__}: {exc});"
                f" admissions through limiter {self.name!r} wait until it is back"
            )
            logger.warning("limiter %s: %s", self.name, self.unavailable)
            self._backoff_s = OUTAGE_BACKOFF_S[0]
        wait = self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, OUTAGE_BACKOFF_S[1])
        return wait

    @property
    def token_keys(self) -> list[str]:
        """The keys of the token constraints (``KEYS`` of settle.lua)."""
        return list(self._token_keys)

    def settle_args(self, key: str, cost: float, delta: float) -> list[Any]:
        """The settle script's ``ARGV``: slot `key`'s real `cost`, `delta` from the booked."""
        args: list[Any] = [key, repr(float(cost)), repr(float(delta)), len(self._token_intervals)]
        return args + [repr(i) for i in self._token_intervals]

    @property
    def keys(self) -> list[str]:
        """The Redis keys the admission script reads and writes (``KEYS`` of admit.lua)."""
        return list(self._keys)

    def admit_args(self, key: str, cost: float, time_arg: str = "") -> list[Any]:
        """The admission script's ``ARGV`` for slot `key` costing `cost` (see admit.lua)."""
        limit = self._max_in_flight or 0
        args = [key, repr(float(cost)), limit, repr(self.redis.lease_s), time_arg]
        return [*args, len(self._constraints), *self._args]

    def _granted(self, key: str, cost: float, now: float) -> Slot:
        self.learning.started(now)
        self._in_flight += 1
        self.admitted += 1
        slot = RedisSlot(self, cost, now, key)
        if self._max_in_flight is not None:
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
                await self.redis.run_script("renew", self._keys[:1], args)
            except _unreachable_errors() as exc:
                logger.warning("limiter %s: renewing leases failed (%s)", self.name, exc)

    def _spawn(self, coro: Any, what: str) -> None:
        async def guarded() -> None:
            try:
                await coro
            except _unreachable_errors() as exc:
                logger.warning(
                    "limiter %s: %s failed, Redis unreachable (%s)", self.name, what, exc
                )

        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- what every process learns --------------------------------------------------------

    def redate(self, slot: RedisSlot) -> bool:
        """Move `slot`'s log entries to Redis's now, in the background (see redate.lua).

        Returns whether a re-dating was scheduled (only limiters with windows keep logs).
        """
        if not self._logs:
            return False
        self._spawn(self._redate(slot), "dating a call")
        return True

    async def _redate(self, slot: RedisSlot) -> None:
        slot.redate_sending()
        args = [slot.key, self.redis.time_arg(), repr(slot.behind_s)]
        await self.redis.run_script("redate", self._logs, args)

    def _settle(self, slot: Slot, real: dict[str, float]) -> None:
        before = slot.settled_cost
        slot.settled.update(real)
        cost = slot.settled_cost
        delta = cost - before
        if not delta:
            return
        if not self._token_intervals or not isinstance(slot, RedisSlot):
            return
        args = self.settle_args(slot.key, cost, delta)
        self._spawn(self.redis.run_script("settle", self._token_keys, args), "settling a cost")
        if delta < 0 and self._released is not None:
            self._released.set()

    def _release(
        self, slot: Slot, error: BaseException | None, latency_s: float | None, *, sent_at: float
    ) -> None:
        super()._release(slot, error, latency_s, sent_at=sent_at)
        if isinstance(slot, RedisSlot) and slot.key in self._held:
            self._held.discard(slot.key)
            self._spawn(self.redis.client.zrem(self._keys[0], slot.key), "releasing a slot")
        if self._released is not None:
            self._released.set()

    def pause_for(self, seconds: float) -> None:
        """Stop admitting anyone, in every process, for `seconds` (the API said so)."""
        super().pause_for(seconds)
        if seconds > 0:
            args = [repr(float(seconds)), self.redis.time_arg()]
            self._spawn(self.redis.run_script("pause", self._keys[1:2], args), "pausing")

    def observe_headers(self, headers: Any, *, sent_at: float | None = None) -> None:
        """Learn the server's stated budgets, and hold every process to them."""
        before = dict(self._server_caps)
        super().observe_headers(headers, sent_at=sent_at)
        loop_now = asyncio.get_running_loop().time()
        for unit, cap in self._server_caps.items():
            if before.get(unit) is cap:
                continue
            args = [unit, repr(cap.remaining), repr(max(cap.until - loop_now, 0.0))]
            args += [repr(cap.refill_per_s), self.redis.time_arg()]
            self._spawn(self.redis.run_script("cap", self._keys[2:3], args), "sharing a budget")
        self._server_caps.clear()  # held in Redis, for everyone: not twice here

    async def drain(self) -> None:
        """Wait for pending background writes (releases, settles) to reach Redis."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def share_limits(app: App, limits: RedisLimits) -> None:
    """Replace each of `app`'s limiters by a `RedisLimiter` with the same limits, in place.

    ``conveyor worker --limits redis://...`` calls this: the app's code keeps declaring its
    limiters as usual, and every worker started with the same Redis shares them.
    """
    registry: dict[str, Limiter] = app._limiters  # noqa: SLF001 - the app's own registry
    for name, limiter in list(registry.items()):
        if isinstance(limiter, RedisLimiter):
            continue
        first = limiter._constraints[0] if limiter._constraints else None  # noqa: SLF001
        burst = 0.0
        if first is not None and limiter.window_s is None:
            pacer = first.pacer
            assert pacer is not None
            burst = pacer.tolerance_s / pacer.interval_s
        registry[name] = RedisLimiter(
            name,
            redis=limits,
            rates=limiter.rates,
            concurrency=limiter._max_in_flight,  # noqa: SLF001
            window_s=limiter.window_s,
            burst=burst,
            breaker=limiter.breaker if limiter.breaker is not None else False,
        )
