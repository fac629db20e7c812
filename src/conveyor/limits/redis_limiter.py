"""`RedisLimits` and `RedisLimiter`: one limiter's budget shared by every process, in Redis.

>>> limits = RedisLimits("redis://127.0.0.1:6379/0")  # doctest: +SKIP
>>> openai = limits.limiter("openai", requests_per_minute=500, tokens_per_minute=200_000,
...                         window_s=1)  # doctest: +SKIP
>>> claude = redis_limiter(LimiterConfig(name="claude", rates=(...), bucket_s=1),
...                        "redis://127.0.0.1:6379/0")  # doctest: +SKIP

A `RedisLimiter` is a `Limiter` built from the same `LimiterConfig` (same arguments, same
``acquire``/ticket protocol, the same learning and cost model) whose admission is held in
Redis (`conveyor.limits.redis_admission`), under ``conveyor:limit:{name}:*``: every process
that makes a limiter of the same name and settings on the same Redis shares one budget, in
every shape (sliding windows, paced, token buckets with output tokens as a debt) and every
dimension, each admission one atomic script on Redis's clock (``TIME``), never the callers':
machines whose clocks disagree cannot break the limit. The guarantees are the local
limiter's: no sliding window of ``window_s`` admits more than its share, no bucket more than
its capacity plus its refill (``tests/limits/test_redis_properties.py``).

- **Settling** (the real cost per dimension) corrects the shared bookings.
- **Retry-After** pauses every process; **rate-limit headers** seen by one process hold every
  process to the budget they state, and to a limit they state below ours; a **quota halt**
  halts every process that asks within `conveyor.limits.redis_admission.HALT_S`.
- **Concurrency** across processes uses leases: each admitted call holds a lease of
  ``lease_s``, renewed while the call runs; a killed process's slots come back when its leases
  lapse, within one lease period. ``concurrency="auto"`` is found per process: not offered.
- **Redis unreachable**: admissions wait (they never fail), the limiter logs why once and
  exposes it as `unavailable`, and work resumes when Redis answers again.

Within one process, callers are admitted first come, first served; across processes, each
process's head of queue asks Redis in turn.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from functools import cache, partial
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, Self, Unpack

from .._urls import hide_secrets, shown_url
from ..errors import ConfigError
from .limiter import Limiter, LimiterParts
from .redis_admission import ADMITTING, RedisAdmission, RedisSlot
from .spec import LimiterConfig, limiter_config

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..jobs.app import App
    from ..policy.breaker import CircuitBreaker

__all__ = [
    "ADMITTING",
    "RedisLimiter",
    "RedisLimits",
    "RedisSlot",
    "redis_limiter",
    "share_limits",
]

logger = logging.getLogger("conveyor.limits")


@cache
def script(name: str) -> str:
    """The Lua source of ``lua/<name>.lua``."""
    return (resources.files("conveyor.limits") / "lua" / f"{name}.lua").read_text("utf-8")


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

    def limiter(self, name: str | LimiterConfig, **limits: Any) -> RedisLimiter:
        """A `RedisLimiter` sharing this Redis: `name` and `Limiter`'s arguments, or a config."""
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
    """A `Limiter` whose admission lives in Redis, shared by every process (module docstring).

    Args:
        name: the limiter's name (processes share a budget by using the same name), or a
            whole `LimiterConfig`.
        redis: the `RedisLimits` that holds it.
        breaker, classifier: as `Limiter`'s (this process's own).
        **limits: as `Limiter`'s, with a name (``concurrency="auto"`` is per process, so not
            offered here).
    """

    def __init__(
        self,
        name: str | LimiterConfig,
        *,
        redis: RedisLimits,
        breaker: CircuitBreaker | Literal[False] | None = None,
        classifier: Any = None,
        **limits: Any,
    ) -> None:
        if isinstance(name, LimiterConfig):
            if limits:
                msg = (
                    f"RedisLimiter({name.name!r}, {', '.join(limits)}=...): give the limits in"
                    " the LimiterConfig or as arguments, not both"
                )
                raise ConfigError(msg)
            config = name
        else:
            config = limiter_config(name, **limits)
        if config.concurrency == "auto":
            msg = (
                f"RedisLimiter({config.name!r}, concurrency='auto'): adaptive concurrency is"
                " found per process; give a number shared by all processes, e.g. concurrency=50"
            )
            raise ConfigError(msg)
        self.redis = redis
        self._setup(config, breaker, classifier, partial(RedisAdmission, redis=redis))
        admission = self._admission
        assert isinstance(admission, RedisAdmission)
        #: The admission backend: the Redis keys and scripts this limiter uses.
        self.admission = admission

    @classmethod
    def from_config(cls, config: LimiterConfig, **parts: Unpack[LimiterParts]) -> Self:
        """Not without a Redis: `RedisLimits.limiter(config)` or `redis_limiter(config, url)`."""
        del parts
        msg = (
            f"RedisLimiter.from_config({config!r}): a Redis-held limiter needs its Redis; use"
            " RedisLimits(url).limiter(config) or redis_limiter(config, url)"
        )
        raise ConfigError(msg)

    def __repr__(self) -> str:
        return f"Redis{super().__repr__()}"

    @property
    def unavailable(self) -> str | None:
        """Why admissions are paused now (Redis unreachable), or ``None``."""
        return self.admission.unavailable

    @property
    def keys(self) -> list[str]:
        """The Redis keys the admission script reads and writes (``KEYS`` of admit.lua)."""
        return list(self.admission.keys)

    async def drain(self) -> None:
        """Wait for pending background writes (releases, settles) to reach Redis."""
        await self.admission.drain()


def redis_limiter(
    config: LimiterConfig,
    url: str,
    *,
    prefix: str = "conveyor:limit",
    lease_s: float = 10.0,
    breaker: CircuitBreaker | Literal[False] | None = None,
) -> RedisLimiter:
    """A `RedisLimiter` enforcing `config` for every process using the Redis at `url`.

    Each process calls this with the same config and URL; close it with
    ``await limiter.redis.aclose()``.
    """
    limits = RedisLimits(url, prefix=prefix, lease_s=lease_s)
    return RedisLimiter(config, redis=limits, breaker=breaker)


def share_limits(app: App, limits: RedisLimits) -> None:
    """Replace each of `app`'s limiters by a `RedisLimiter` with the same config, in place.

    ``conveyor worker --limits redis://...`` calls this: the app's code keeps declaring its
    limiters as usual, and every worker started with the same Redis shares them. A limiter
    with ``concurrency="auto"`` (found per process) is shared without a concurrency limit.
    """
    registry: dict[str, Limiter] = app._limiters  # noqa: SLF001 - the app's own registry
    for name, limiter in list(registry.items()):
        if isinstance(limiter, RedisLimiter):
            continue
        config = limiter.config
        if config.concurrency == "auto":
            logger.warning(
                "limiter %s: concurrency='auto' is found per process; shared through Redis"
                " without a concurrency limit (give a number to share one)",
                name,
            )
            config = dataclasses.replace(config, concurrency=None)
        registry[name] = RedisLimiter(
            config,
            redis=limits,
            breaker=limiter.breaker if limiter.breaker is not None else False,
            classifier=limiter.classifier,
        )
