"""A batch's output and error files are written once, by one reader, whatever happens to it.

The reader that finds a batch's job ended takes it (a claim in its record, under the row's
lock), writes its files, and makes them visible with its final status. These tests hold the
claim in another's name, make the writing fail, and read many times at once. The service is
in-process on a `MemoryStore`, its connection the mock API (real time; waits bounded by 10 s).
"""

import asyncio
import json
from typing import Any

import pytest

from conveyor import _clock
from conveyor.jobs import MemoryStore, StoreUnavailable
from conveyor.service import openai_batches
from conveyor.service.batches import BatchRecords
from conveyor.service.files import Files
from conveyor.service.openai_batches import FINALIZE_LEASE_S

from .test_batches import CHAT, jsonl, line, service, upload


async def job_ended(store: MemoryStore, batch_id: str) -> None:
    """Wait (bounded) until the batch's job has ended, without reading the batch."""
    [row] = await store.files.batches("default", "openai")
    assert row.id == batch_id
    async with asyncio.timeout(10):
        while True:
            job = await store.get_job(row.job_id or "")
            if job is not None and job.done:
                return
            await asyncio.sleep(0.02)


async def ended_batch(client: Any, store: MemoryStore) -> Any:
    """A batch of 5 requests, created, whose job has ended (the batch itself not yet read)."""
    file_id = await upload(client, jsonl([line(f"r{i}") for i in range(5)]))
    batch = await client.batches.create(
        input_file_id=file_id, endpoint=CHAT, completion_window="24h"
    )
    await job_ended(store, batch.id)
    return batch


async def output_files(store: MemoryStore) -> list[str]:
    return [f.id for f in await store.files.files("default", purpose="batch_output")]


def test_a_batch_held_by_a_finalizer_that_died_is_taken_over_once_its_claim_lapses(
    tmp_path, monkeypatch
):
    """Claimed by a dead reader: finalizing, no files; past FINALIZE_LEASE_S, completed."""
    store = MemoryStore()
    real_wall = _clock.wall

    async def main() -> tuple[Any, Any, list[str]]:
        async with service(tmp_path, store=store) as client:
            batch = await ended_batch(client, store)

            def dead(r: Any) -> bool:
                r.finalizer, r.finalizer_at = "a-reader-that-died", real_wall()
                return True

            await BatchRecords(store.files, "default").change(batch.id, dead)
            held = await client.batches.retrieve(batch.id)
            monkeypatch.setattr(_clock, "wall", lambda: real_wall() + FINALIZE_LEASE_S + 1)
            taken = await client.batches.retrieve(batch.id)
            return held, taken, await output_files(store)

    held, taken, outputs = asyncio.run(main())
    assert (held.status, held.output_file_id) == ("finalizing", None)
    assert taken.status == "completed"
    assert outputs == [taken.output_file_id]


def test_a_finalize_that_fails_lets_the_next_read_take_the_batch_at_once(tmp_path, monkeypatch):
    """The files cannot be written (the store is down): 503; the next read completes it."""
    store = MemoryStore()
    real_write = Files.write
    calls = 0

    async def failing_once(self: Files, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("the test's store", OSError("cut"))
        return await real_write(self, *args, **kwargs)

    async def main() -> tuple[int, Any, list[str]]:
        async with service(tmp_path, store=store) as client:
            batch = await ended_batch(client, store)
            monkeypatch.setattr(Files, "write", failing_once)
            http = client._client
            failed = await http.get(f"http://localhost/v1/batches/{batch.id}")
            done = await client.batches.retrieve(batch.id)
            return failed.status_code, done, await output_files(store)

    status, done, outputs = asyncio.run(main())
    assert status == 503
    assert done.status == "completed"
    assert outputs == [done.output_file_id]


@pytest.mark.parametrize("readers", [8])
def test_many_reads_at_once_write_the_files_once(tmp_path, readers):
    """8 reads of an ended batch at once: one writes the files; all then see the same ids."""
    store = MemoryStore()
    lines = [line(f"r{i}") for i in range(30)] + [line("bad", content="")]

    async def main() -> tuple[list[Any], Any, list[str]]:
        async with service(tmp_path, store=store) as client:
            file_id = await upload(client, jsonl(lines))
            batch = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            await job_ended(store, batch.id)
            seen = await asyncio.gather(
                *(client.batches.retrieve(batch.id) for _ in range(readers))
            )
            done = await client.batches.retrieve(batch.id)
            return list(seen), done, await output_files(store)

    seen, done, outputs = asyncio.run(main())
    assert {b.status for b in seen} <= {"finalizing", "completed"}
    assert done.status == "completed"
    assert sorted(outputs) == sorted([done.output_file_id, done.error_file_id])
    finals = {(b.output_file_id, b.error_file_id) for b in seen if b.status == "completed"}
    assert finals <= {(done.output_file_id, done.error_file_id)}
    [row] = asyncio.run(store.files.batches("default", "openai"))
    assert json.loads(row.record)["finalizer"] is None


def test_a_finalizer_still_writing_renews_its_claim_so_no_one_takes_the_batch_over(
    tmp_path, monkeypatch
):
    """Writing past the claim's lease: the claim is renewed, and nobody takes the batch over.

    A read meanwhile sees ``finalizing`` and writes nothing; the batch completes with one set
    of files.
    """
    monkeypatch.setattr(openai_batches, "FINALIZE_LEASE_S", 0.3)
    store = MemoryStore()
    real_write = Files.write
    release = asyncio.Event()

    async def slow(self: Files, *args: Any, **kwargs: Any) -> Any:
        await release.wait()
        return await real_write(self, *args, **kwargs)

    async def claim_at(batch_id: str) -> float | None:
        [row] = await store.files.batches("default", "openai")
        at: float | None = json.loads(row.record)["finalizer_at"] if row.id == batch_id else None
        return at

    async def main() -> tuple[Any, Any, list[str], list[str]]:
        async with service(tmp_path, store=store) as client:
            batch = await ended_batch(client, store)
            monkeypatch.setattr(Files, "write", slow)
            first = asyncio.create_task(client.batches.retrieve(batch.id))
            claimed: float | None = None
            async with asyncio.timeout(10):  # the claim is taken, then renewed
                while True:
                    at = await claim_at(batch.id)
                    if claimed is not None and at is not None and at > claimed:
                        break
                    claimed = claimed or at
                    await asyncio.sleep(0.01)
            meanwhile = await client.batches.retrieve(batch.id)
            files_meanwhile = await output_files(store)
            release.set()
            await first
            done = await client.batches.retrieve(batch.id)
            return meanwhile, done, files_meanwhile, await output_files(store)

    meanwhile, done, files_meanwhile, outputs = asyncio.run(main())
    assert (meanwhile.status, files_meanwhile) == ("finalizing", [])
    assert done.status == "completed"
    assert outputs == [done.output_file_id]
