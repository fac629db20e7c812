"""The local PostgreSQL and Redis the scale-out tests use, and what to do when one is absent.

Absent, a test that needs one skips with the reason; with ``CI=true`` in the environment it
fails instead, so that a CI machine missing its services can never pass by skipping.
Addresses: ``CONVEYOR_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
and ``CONVEYOR_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``).
"""

import os
import shutil
import socket
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("CONVEYOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Skip the test for `reason`, or fail it when ``CI=true`` (a skip in CI is a failure)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def postgres_url() -> str:
    """The test database's URL, after checking the driver and the server are there."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        unavailable("asyncpg is not installed (pip install -e '.[dev]')")
    if not _reachable(POSTGRES_URL, 5432):
        unavailable(f"no PostgreSQL at {POSTGRES_URL} (set CONVEYOR_TEST_POSTGRES)")
    return POSTGRES_URL


def redis_url() -> str:
    """The test Redis's URL, after checking the client and the server are there."""
    try:
        import redis  # noqa: F401
    except ImportError:
        unavailable("the redis package is not installed (pip install -e '.[dev]')")
    if not _reachable(REDIS_URL, 6379):
        unavailable(f"no Redis at {REDIS_URL} (set CONVEYOR_TEST_REDIS)")
    return REDIS_URL


def unique_schema() -> str:
    """A schema name no other test run uses (dropped by `drop_schema`)."""
    return f"conveyor_test_{uuid.uuid4().hex[:12]}"


def drop_schema(url: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    import asyncio

    import asyncpg

    async def main() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(main())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server this test starts on its own port, and may stop and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("no redis-server binary to start a private Redis")
        self.binary = str(binary)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait (bounded) until it accepts connections."""
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 5
        while not _reachable(self.url, self.port):
            if time.monotonic() > deadline:
                msg = "the private redis-server did not start within 5 s"
                raise RuntimeError(msg)
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (kill -9: it goes away the way a crashed one does)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None
