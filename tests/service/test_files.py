"""Uploads in the job store: never half seen, never left behind, never whole in memory.

An upload is written to the store a chunk at a time and made visible whole at its end; one
that fails or is cancelled is removed at once, and one whose process died is removed by the
service's sweep once it has been idle for `UPLOAD_IDLE_S`.
"""

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.jobs import MemoryStore, SqliteStore
from conveyor.jobs.file_model import CHUNK_BYTES
from conveyor.service.files import UPLOAD_IDLE_S, Files
from conveyor.testing import VirtualClock

from .conftest import api, config

#: The largest upload the tests in this file send at once (memory is measured against it).
BIG_BYTES = 24 * CHUNK_BYTES


async def uploads_left(store: Any) -> int:
    """How many uploads the store holds that are not whole files (and removes them)."""
    # Every upload is idle for more than -1 s: the sweep takes each one, and counts it.
    count: int = await store.files.sweep_uploads(idle_s=-1.0)
    return count


def test_the_chunk_is_one_mebibyte():
    """Chunks of 1 MiB: a few in memory at most, and a 1 GiB file is 1,024 rows."""
    assert CHUNK_BYTES == 1 << 20
    assert MemoryStore().files.chunk_bytes == CHUNK_BYTES


def test_a_failed_upload_leaves_nothing_at_once(tmp_path):
    """Over max_file_bytes (413) or a bad line (422): nothing of it is left in the store."""
    store = MemoryStore()

    async def main() -> None:
        async with api(config(tmp_path, max_file_bytes=3 * 1024), store=store) as a:
            r = await a.client.post("/v1/files", content=b"1\n" * 2048)
            assert r.status_code == 413, r.text
            r = await a.client.post("/v1/files", content=b"1\n" * 1000 + b"{bad\n")
            assert r.status_code == 422, r.text
            assert "line 1001" in r.json()["detail"]
            assert await uploads_left(store) == 0
            assert await store.files.files("default") == []

    asyncio.run(main())


@pytest.mark.parametrize("where", ["mid-body", "at the publish"])
def test_a_cancelled_upload_leaves_nothing_behind_at_once(tmp_path, where):
    """Cancelled while receiving, or while being made visible: no file, no upload left.

    On SQLite, whose calls suspend (as PostgreSQL's do): a cancelled publish may have gone
    through in its thread, and the file is removed all the same (nobody was told its id).
    """
    store = SqliteStore(tmp_path / "jobs.db")
    files = Files(store.files)

    async def main() -> None:
        stalled = asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            yield b"1\n" * (CHUNK_BYTES // 2 + 1)  # a whole chunk written to the store
            if where == "mid-body":
                stalled.set()
                await asyncio.Event().wait()  # the client stalls: cancelled here
            else:
                # The body ends and the task is cancelled: the next wait is the publish's.
                task = asyncio.current_task()
                assert task is not None
                task.cancel()

        upload = asyncio.create_task(files.save("default", chunks(), max_bytes=1 << 30))
        if where == "mid-body":
            await stalled.wait()
            assert await store.files.files("default") == []  # not visible while it runs
            upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        assert await uploads_left(store) == 0
        assert await store.files.files("default") == []
        await store.close()

    asyncio.run(main())


def test_an_upload_left_by_a_dead_process_is_swept_once_idle(tmp_path):
    """A dead process's upload is removed by the sweep after UPLOAD_IDLE_S, not before.

    On virtual time: the service's sweep runs every 5 s; an hour passes at once.
    """
    clock = VirtualClock(wall_start_s=1_700_000_000.0)
    store = MemoryStore()

    file_id = "file-" + "d" * 32

    async def exists() -> bool:
        # The row itself: no reader of the store's interface sees an upload.
        found = await store._connector.read(lambda c: c.fetchval("file_exists", id=file_id))
        return found is not None

    async def main() -> tuple[bool, bool, int]:
        # What a killed process leaves: an upload begun, a chunk written, never published.
        dead = await store.files.upload("default", file_id, created_at=0.0)
        await dead.write(b"1\n" * CHUNK_BYTES)
        async with api(config(tmp_path), store=store, worker=False):
            await asyncio.sleep(UPLOAD_IDLE_S - 60)
            before = await exists()
            await asyncio.sleep(120)
            return before, await exists(), await uploads_left(store)

    # Kept while not idle long enough, then swept by the service (none left to count).
    assert clock.run(main()) == (True, False, 0)


def test_a_second_service_starting_mid_upload_leaves_the_first_ones_upload(tmp_path):
    """Two services on one store: one starting mid-upload of the other removes nothing."""
    store = MemoryStore()
    gate, started = asyncio.Event(), asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"n": 1}\n' * (CHUNK_BYTES // 9 + 1)
        started.set()
        await gate.wait()
        yield b'{"n": 2}\n'

    async def main() -> None:
        async with api(config(tmp_path), store=store) as first:
            files: Files = first.asgi.state.service.files
            upload = asyncio.create_task(files.save("default", chunks(), max_bytes=1 << 30))
            await started.wait()
            async with api(config(tmp_path / "b"), store=store):
                await asyncio.sleep(0.05)  # the second service's start and first sweep
            gate.set()
            info = await upload
            assert info.items == CHUNK_BYTES // 9 + 2
            assert info.bytes == 9 * info.items

    asyncio.run(main())


def test_an_upload_holds_a_few_chunks_in_memory_never_the_file(tmp_path):
    """24 MiB posted, then read back: memory peaks at a few 1 MiB chunks, not 24 MiB.

    The body streams into the service in 64 KiB pieces (as a server hands them over), through
    its checks, into a SQLite store; tracemalloc measures what Python allocates meanwhile.
    """
    store = SqliteStore(tmp_path / "jobs.db")
    line = b'{"text": "' + b"x" * 1000 + b'"}\n'

    async def body() -> AsyncIterator[bytes]:
        piece = line * 64
        for _ in range(BIG_BYTES // len(piece)):
            yield piece

    async def main() -> tuple[int, int, Any]:
        async with api(config(tmp_path, max_file_bytes=1 << 30), store=store, worker=False) as a:
            tracemalloc.start()
            try:
                r = await a.client.post("/v1/files", content=body())
                _, upload_peak = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                assert r.status_code == 201, r.text
                files: Files = a.asgi.state.service.files
                read = 0
                async for chunk in files.content("default", r.json()["id"]):
                    read += len(chunk)
                _, read_peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            stored = await store.files.file("default", r.json()["id"])
            assert read == r.json()["bytes"]
            return upload_peak, read_peak, stored

    upload_peak, read_peak, stored = asyncio.run(main())
    size = BIG_BYTES // (len(line) * 64) * len(line) * 64
    assert stored.bytes == size
    assert stored.chunks == -(-size // CHUNK_BYTES)  # 1 MiB chunks, the last one shorter
    print(f"upload of {size / 2**20:.1f} MiB: peak {upload_peak / 2**20:.2f} MiB traced;"
          f" read back: peak {read_peak / 2**20:.2f} MiB")  # fmt: skip
    assert upload_peak < 4 * CHUNK_BYTES, upload_peak
    assert read_peak < 4 * CHUNK_BYTES, read_peak


def test_a_job_is_made_from_a_large_file_without_holding_it(tmp_path):
    """A job of a stored file's lines: the items go in as they are read, a chunk at a time."""
    store = SqliteStore(tmp_path / "jobs.db")
    line = b'{"text": "' + b"y" * 2000 + b'"}\n'
    count = 8 * CHUNK_BYTES // len(line)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(count // 16):
            yield line * 16

    async def main() -> tuple[int, int]:
        async with api(config(tmp_path, max_file_bytes=1 << 30), store=store, worker=False) as a:
            r = await a.client.post("/v1/files", content=body())
            assert r.status_code == 201, r.text
            tracemalloc.start()
            try:
                job = await a.client.post(
                    "/v1/jobs", json={"task": "echo", "file_id": r.json()["id"]}
                )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert job.status_code == 202, job.text
            return job.json()["counts"]["total"], peak

    total, peak = asyncio.run(main())
    assert total == count // 16 * 16
    assert peak < 4 * CHUNK_BYTES, peak


def test_files_and_their_content_need_the_tenants_own_id(tmp_path: Path):
    """Bad ids, another tenant's: 404 on read, content and delete, as ids that do not exist."""

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            r = await a.client.post("/v1/files", content=b"1\n2\n")
            assert r.status_code == 201, r.text
            file_id = r.json()["id"]
            listed = (await a.client.get("/v1/files")).json()["data"]
            assert [f["id"] for f in listed] == [file_id]
            content = await a.client.get(f"/v1/files/{file_id}/content")
            assert (content.status_code, content.content) == (200, b"1\n2\n")
            assert content.headers["content-length"] == "4"
            for bad in ["file-" + "0" * 32, "../x", "file-" + "A" * 32]:
                for path in [f"/v1/files/{bad}", f"/v1/files/{bad}/content"]:
                    assert (await a.client.get(path)).status_code == 404, path
                assert (await a.client.delete(f"/v1/files/{bad}")).status_code == 404

    asyncio.run(main())


# Starlette's parser drops a file part that never ends without closing its temporary file
# (the collector does): a ResourceWarning of the library's, not of the service.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_multipart_upload_cut_short_is_told_so(tmp_path: Path):
    """A body with no whole field, or whose file part never ends: a 400 saying what came."""
    head = {"Content-Type": "multipart/form-data; boundary=XYZ"}
    purpose = b'--XYZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
    file_start = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            cut = await a.client.post(
                "/v1/files", content=b"--XYZ\r\nContent-Disposition: form-da", headers=head
            )
            assert cut.status_code == 400, cut.text
            assert "holds no complete field (cut short" in cut.json()["error"]["message"]
            unended = purpose + file_start + b"\r\n" + b'{"n": 1}\n'
            r = await a.client.post("/v1/files", content=unended, headers=head)
            assert r.status_code == 400, r.text
            message = r.json()["error"]["message"]
            assert "'file'" in message, message
            assert "purpose" not in message, message

    asyncio.run(main())
