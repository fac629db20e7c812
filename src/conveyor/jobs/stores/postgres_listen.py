"""The PostgreSQL store's notifications: one listening connection per store, kept open.

`Listener` holds a connection that listens (``LISTEN``) on every channel a callback follows, and
hands each notification's payload to the channel's callbacks. The connection is kept open:

- **Lost** (PostgreSQL restarted, the backend was terminated, the connection was reset): the
  driver says so, and the connection is opened again in the background, after waits of
  `RELISTEN_WAITS_S` between tries. The log says when it was lost and when it is back.
- **Silent** (a firewall or load balancer dropped an idle connection without telling either
  end): nothing says so, so every `CHECK_EVERY_S` the connection runs a query, and one with no
  answer within `CHECK_TIMEOUT_S` ends it, which is then the case above.

Once it is back, every callback is called once with ``""``: notifications sent while nobody
listened are lost, so anything may have changed (a worker looks for work; a feed with no job
of that id ignores it). Until then the listeners' own polling finds the changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import StoreError

__all__ = ["CHECK_EVERY_S", "CHECK_TIMEOUT_S", "RELISTEN_WAITS_S", "Listener"]

logger = logging.getLogger("conveyor.jobs")

#: Waits between tries to open a lost listening connection again (the last one repeats).
RELISTEN_WAITS_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
#: How often the listening connection is checked with a query: under the idle timeouts of
#: the usual firewalls and load balancers (minutes), so it also keeps the connection in use.
CHECK_EVERY_S = 30.0
#: A check, or a ``LISTEN``, with no answer within this long ends the connection.
CHECK_TIMEOUT_S = 10.0

Conn = Any  # an asyncpg connection
Callback = Callable[[str], None]

_retry_sleep = asyncio.sleep  # the waits between tries (tests replace it)


class Listener:
    """One store's listening connection; see the module docstring.

    Args:
        connect: opens a new connection (with the store's settings).
    """

    def __init__(self, connect: Callable[[], Awaitable[Conn]]) -> None:
        self._connect = connect
        self._conn: Conn | None = None
        self._callbacks: dict[str, list[Callback]] = {}
        self._lock: asyncio.Lock | None = None  # made in the loop that uses it
        self._relistening: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._closed = False
        #: How many times a lost listening connection was opened again.
        self.relistened = 0

    @property
    def connection(self) -> Conn | None:
        """The listening connection now (None before the first listen, or while it is lost)."""
        return self._conn

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def listen(self, name: str, callback: Callback) -> None:
        """Call ``callback(payload)`` on each notification of channel `name`."""
        async with self._locked():
            if self._closed:
                msg = "the PostgreSQL store is closed"
                raise StoreError(msg)
            callbacks = self._callbacks.setdefault(name, [])
            callbacks.append(callback)
            conn = self._conn
            if conn is None and self._relistening is None:
                try:  # the first listen: a failure is the caller's, and nothing stays
                    self._conn = await self._open(await self._connect())
                except BaseException:
                    callbacks.remove(callback)
                    if not callbacks:
                        del self._callbacks[name]
                    raise
            elif conn is not None and not conn.is_closed() and len(callbacks) == 1:
                try:
                    await asyncio.wait_for(
                        conn.add_listener(name, self._dispatcher(name)), CHECK_TIMEOUT_S
                    )
                except Exception as exc:  # the connection's fault: open it again, with `name`
                    self._give_up(conn, f"LISTEN failed ({exc!r})")
            # Otherwise the connection is lost, and opening it again adds the channel.

    def _dispatcher(self, name: str) -> Callable[[object, int, str, str], None]:
        def dispatch(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            self._call(name, payload)

        return dispatch

    def _call(self, name: str, payload: str) -> None:
        for cb in list(self._callbacks.get(name, ())):
            try:
                cb(payload)
            except Exception:
                logger.exception("conveyor: a callback of the notifications of %s failed", name)

    async def _open(self, conn: Conn) -> Conn:
        """`conn` listening on every channel that has callbacks, and watched; or terminated."""
        try:
            for name in self._callbacks:
                await asyncio.wait_for(
                    conn.add_listener(name, self._dispatcher(name)), CHECK_TIMEOUT_S
                )
        except BaseException:
            conn.terminate()
            raise
        if self._closed:
            conn.terminate()
            msg = "the PostgreSQL store is closed"
            raise StoreError(msg)
        conn.add_termination_listener(self._lost)
        if self._checking is None:
            self._checking = asyncio.get_running_loop().create_task(self._check())
        return conn

    def _give_up(self, conn: Conn, why: str) -> None:
        logger.warning("conveyor: the connection listening to PostgreSQL: %s; ending it", why)
        conn.terminate()  # the driver then reports it lost: `_lost`

    def _lost(self, conn: Conn) -> None:
        if self._closed or conn is not self._conn:
            return  # closed by us, or an older connection
        self._conn = None
        logger.warning(
            "conveyor: the connection listening to PostgreSQL was lost; opening it again"
            " (until then, changes are found by polling)"
        )
        self._relistening = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        tries = 0
        while not self._closed:
            try:
                conn = await self._connect()  # outside the lock: `listen` need not wait on it
                try:
                    async with self._locked():
                        self._conn = await self._open(conn)
                        self._relistening = None
                except BaseException:  # `_open` terminated it, or it never got the lock
                    conn.terminate()
                    raise
            except Exception as exc:  # any failure: wait, and try again
                if self._closed:
                    return
                wait = RELISTEN_WAITS_S[min(tries, len(RELISTEN_WAITS_S) - 1)]
                # Said once per outage at the warning level; each later try only at debug.
                log = logger.warning if tries == 0 else logger.debug
                tries += 1
                log(
                    "conveyor: listening to PostgreSQL again failed (%r); trying again every"
                    " %g s at most",
                    exc,
                    RELISTEN_WAITS_S[-1],
                )
                await _retry_sleep(wait)
                continue
            self.relistened += 1
            logger.warning("conveyor: listening to PostgreSQL again")
            for name in list(self._callbacks):
                self._call(name, "")
            return

    async def _check(self) -> None:
        """Every `CHECK_EVERY_S`, a query on the connection; no answer in time ends it."""
        while not self._closed:
            await asyncio.sleep(CHECK_EVERY_S)
            async with self._locked():
                conn = self._conn
                if conn is None:
                    continue
                if conn.is_closed():  # lost before it was watched: `_lost` never ran for it
                    self._lost(conn)
                    continue
                try:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
                except Exception as exc:
                    self._give_up(conn, f"no answer to a check ({exc!r})")

    def _stop_tasks(self) -> list[asyncio.Task[None]]:
        tasks = [t for t in (self._relistening, self._checking) if t is not None]
        self._relistening = self._checking = None
        for task in tasks:
            with contextlib.suppress(RuntimeError):  # its loop may be closed: then it is gone
                task.cancel()
        return tasks

    async def close(self) -> None:
        """Stop listening, and close the connection."""
        self._closed = True
        tasks = self._stop_tasks()
        conn, self._conn = self._conn, None
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if conn is not None:
            try:  # a connection dropped silently would never answer the goodbye
                await conn.close(timeout=CHECK_TIMEOUT_S)
            except Exception:
                conn.terminate()

    def terminate(self) -> None:
        """Drop the connection at once, without a loop (for tests whose loop has ended)."""
        self._closed = True
        self._stop_tasks()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
