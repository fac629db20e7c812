"""The PostgreSQL store's listening connection: lost, silent, refused, closed (real server)."""

import asyncio
import json
import logging

import pytest

from conveyor.jobs.errors import StoreUnavailable
from conveyor.jobs.model import JobOptions, NewJob
from conveyor.jobs.stores import postgres_listen
from conveyor.jobs.stores.postgres import PostgresStore


def job(job_id: str) -> NewJob:
    return NewJob(id=job_id, task="t", options=JobOptions(), created_at=0.0)


def texts(n: int) -> list[str]:
    return [json.dumps(i) for i in range(n)]


class Proxy:
    """A TCP proxy to PostgreSQL that can go silent.

    `freeze` stops forwarding on the connections open then, closing nothing (as a firewall
    that dropped them); new ones pass.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.frozen: list[asyncio.Event] = []
        self._current = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        self._current.set()
        self._current = asyncio.Event()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, stop: asyncio.Event):
        try:
            while data := await r.read(65536):
                if stop.is_set():
                    await asyncio.Event().wait()  # a black hole: nothing passes, nothing closes
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if not stop.is_set():
                w.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(self.host, self.port)
        self._writers += [cw, sw]
        stop = self._current
        await asyncio.gather(self._pipe(cr, sw, stop), self._pipe(sr, cw, stop))

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()


async def through_proxy(pg: str) -> tuple[Proxy, PostgresStore]:
    """A proxy to the store's server, and a store on the same schema that connects through it."""
    base, query = pg.split("?", 1)
    host_port = base.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = Proxy(host, int(port))
    via = await proxy.start()
    return proxy, PostgresStore(f"{base.replace(host_port, f'127.0.0.1:{via}')}?{query}")


def test_a_lost_listening_connection_is_opened_again_and_says_so(pg, caplog):
    """A terminated listening backend is opened again, and the log says so.

    Every listener is woken once with "" (changes may have been missed), and notifications
    flow again on both channels.
    """

    async def main() -> None:
        submitter, listener = PostgresStore(pg), PostgresStore(pg)
        work: asyncio.Queue[str] = asyncio.Queue()
        changes: asyncio.Queue[str] = asyncio.Queue()
        await listener.listen("work", work.put_nowait)
        await listener.listen("jobs", changes.put_nowait)
        first = listener._listener.connection
        assert first is not None
        killer = await submitter._connect_one()
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", first.get_server_pid())
        await killer.close()
        assert await asyncio.wait_for(work.get(), 10) == ""
        assert await asyncio.wait_for(changes.get(), 10) == ""
        assert listener._listener.relistened == 1
        assert listener._listener.connection not in (None, first)
        await submitter.create_job(job("j2"), texts(2))
        assert await asyncio.wait_for(work.get(), 5) == "j2"
        assert await asyncio.wait_for(changes.get(), 5) == "j2"
        await submitter.close()
        await listener.close()
        assert listener._listener.connection is None

    with caplog.at_level(logging.WARNING, logger="conveyor.jobs"):
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records]
    assert any("listening to PostgreSQL was lost" in m for m in said), said
    assert "conveyor: listening to PostgreSQL again" in said


def test_a_connection_dropped_silently_is_found_by_its_check_and_opened_again(pg, monkeypatch):
    """No FIN, no error: the periodic check gets no answer, ends it, and listening resumes."""
    monkeypatch.setattr(postgres_listen, "CHECK_EVERY_S", 0.05)
    monkeypatch.setattr(postgres_listen, "CHECK_TIMEOUT_S", 0.5)

    async def main() -> None:
        proxy, listener = await through_proxy(pg)
        submitter = PostgresStore(pg)
        work: asyncio.Queue[str] = asyncio.Queue()
        await listener.listen("work", work.put_nowait)
        first = listener._listener.connection
        proxy.freeze()
        assert await asyncio.wait_for(work.get(), 10) == ""  # opened again, through the proxy
        assert listener._listener.connection not in (None, first)
        await submitter.create_job(job("j3"), texts(1))
        assert await asyncio.wait_for(work.get(), 5) == "j3"
        await submitter.close()
        listener.terminate()  # its pool's connections are frozen: do not wait on them
        await proxy.close()

    asyncio.run(main())


def test_listening_while_postgresql_refuses_retries_until_it_accepts(pg, monkeypatch):
    """While connecting fails the store waits as `RELISTEN_WAITS_S` says, then listens."""
    waits: list[float] = []

    async def no_wait(s: float) -> None:
        waits.append(s)

    monkeypatch.setattr(postgres_listen, "_retry_sleep", no_wait)

    async def main() -> None:
        listener = PostgresStore(pg)
        woken: asyncio.Queue[str] = asyncio.Queue()
        await listener.listen("work", woken.put_nowait)
        real, failures = listener._listener._connect, [2]

        async def flaky() -> object:
            if failures[0]:
                failures[0] -= 1
                raise OSError("connection refused")
            return await real()

        listener._listener._connect = flaky
        first = listener._listener.connection
        assert first is not None
        first.terminate()
        assert await asyncio.wait_for(woken.get(), 10) == ""
        assert waits == [0.1, 0.2]
        assert listener._listener.relistened == 1
        await listener.close()

    asyncio.run(main())


def test_closing_the_store_stops_the_tries_to_listen_again(pg, monkeypatch):
    """Closing the store ends the tries to listen again, and nothing is left running.

    While the connection is lost, a listen on a new channel returns at once (the next
    connection will listen on it).
    """

    async def main() -> None:
        listener = PostgresStore(pg)
        await listener.listen("work", lambda _p: None)
        tries = 0
        trying = asyncio.Event()

        async def refused() -> object:
            nonlocal tries
            tries += 1
            if tries >= 3:
                trying.set()
            raise OSError("connection refused")

        async def quick(_s: float) -> None:
            await asyncio.sleep(0)

        monkeypatch.setattr(postgres_listen, "_retry_sleep", quick)
        listener._listener._connect = refused
        first = listener._listener.connection
        assert first is not None
        first.terminate()
        await asyncio.wait_for(trying.wait(), 10)
        changes: list[str] = []
        await asyncio.wait_for(listener.listen("jobs", changes.append), 5)
        task = listener._listener._relistening
        assert task is not None
        await listener.close()
        assert task.done()
        after = tries
        for _ in range(10):
            await asyncio.sleep(0)
        assert tries == after
        assert listener._listener.connection is None

    asyncio.run(main())


def test_a_first_listen_that_fails_leaves_no_callback_behind(pg):
    """The caller gets the error (as `StoreUnavailable`); a later listen delivers once."""

    async def main() -> None:
        listener, submitter = PostgresStore(pg), PostgresStore(pg)
        await listener._pool_or_open()
        real = listener._listener._connect

        async def refused() -> object:
            raise OSError("connection refused")

        listener._listener._connect = refused
        got: list[str] = []
        with pytest.raises(StoreUnavailable, match="refused"):
            await listener.listen("work", got.append)
        listener._listener._connect = real
        woken: asyncio.Queue[str] = asyncio.Queue()
        await listener.listen("work", woken.put_nowait)
        await submitter.create_job(job("j4"), texts(1))
        assert await asyncio.wait_for(woken.get(), 5) == "j4"
        assert got == []
        await submitter.close()
        await listener.close()

    asyncio.run(main())


def test_closing_over_a_connection_dropped_silently_returns(pg, monkeypatch):
    """The goodbye gets no answer: close gives up after `CHECK_TIMEOUT_S` and drops it."""
    monkeypatch.setattr(postgres_listen, "CHECK_TIMEOUT_S", 0.2)

    async def main() -> None:
        proxy, listener = await through_proxy(pg)
        await listener.listen("work", lambda _p: None)
        conn = listener._listener.connection
        assert conn is not None
        proxy.freeze()
        await asyncio.wait_for(listener._listener.close(), 5)
        assert conn.is_closed()
        listener.terminate()  # its pool's connections are frozen too
        await proxy.close()

    asyncio.run(main())


def test_a_connection_lost_before_it_was_watched_is_found_by_the_check(pg, monkeypatch):
    """Closed with no word to `_lost` (it closed as it was being opened): the check notices."""
    monkeypatch.setattr(postgres_listen, "CHECK_EVERY_S", 0.05)

    async def main() -> None:
        listener = PostgresStore(pg)
        woken: asyncio.Queue[str] = asyncio.Queue()
        await listener.listen("work", woken.put_nowait)
        conn = listener._listener.connection
        assert conn is not None
        conn.remove_termination_listener(listener._listener._lost)
        conn.terminate()
        assert await asyncio.wait_for(woken.get(), 10) == ""
        assert listener._listener.relistened == 1
        await listener.close()

    asyncio.run(main())
