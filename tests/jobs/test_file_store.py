"""The files and batch records every store keeps beside its jobs: one contract, every store.

Each test runs on the memory, SQLite and PostgreSQL stores (`kit`); a second handle on the same
storage (`kit.open()` again) is what another process, or another service instance, holds.
"""

import asyncio
import json
from typing import Any

import pytest

from conveyor.jobs import InvalidJob, Jobs, JobStateError
from conveyor.jobs.file_model import BatchRow, FileItems
from conveyor.jobs.store import FileStore, Store
from conveyor.jobs.stores.file_rules import split_lines

from .conftest import Run, StoreKit

T0 = 1_700_000_000.0


def files(store: Store) -> FileStore:
    found: FileStore = store.files  # type: ignore[attr-defined]
    return found


async def put(
    store: FileStore, data: bytes, *, tenant: str = "t", file_id: str = "file-1", pieces: int = 3
) -> Any:
    """Upload `data` in `pieces` writes and publish it."""
    upload = await store.upload(tenant, file_id, created_at=T0, filename="in.jsonl")
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        await upload.write(data[start : start + step])
    return await upload.publish(items=data.count(b"\n"))


async def content(store: FileStore, tenant: str, file_id: str) -> bytes:
    file = await store.file(tenant, file_id)
    assert file is not None
    return b"".join([c async for c in store.chunks(file)])


def test_an_upload_is_seen_by_no_reader_until_it_is_whole(kit: StoreKit, run: Run):
    """Chunks written, not published: no reader finds the file; published: all of it, at once."""
    data = b"".join(b'{"n": %d}\n' % i for i in range(100))

    async def main() -> None:
        writer, reader = files(kit.open()), files(kit.open())
        writer.chunk_bytes = 64
        upload = await writer.upload("t", "file-1", created_at=T0, filename="in.jsonl")
        await upload.write(data[:500])
        await upload.write(data[500:])
        assert await reader.file("t", "file-1") is None
        assert await reader.files("t") == []
        info = await upload.publish(items=100)
        assert (info.bytes, info.items, info.chunks) == (len(data), 100, -(-len(data) // 64))
        found = await reader.file("t", "file-1")
        assert found == info
        assert [f.id for f in await reader.files("t")] == ["file-1"]
        sizes = [len(c) async for c in reader.chunks(found)]
        assert sizes[:-1] == [64] * (len(sizes) - 1)
        assert 0 < sizes[-1] <= 64
        assert await content(reader, "t", "file-1") == data

    run(main())


def test_a_discarded_upload_leaves_nothing_and_a_published_file_survives_a_discard(
    kit: StoreKit, run: Run
):
    """discard removes an upload's chunks and row; a published file is not an upload any more."""

    async def main() -> None:
        store = files(kit.open())
        upload = await store.upload("t", "file-gone", created_at=T0)
        await upload.write(b"x" * (store.chunk_bytes + 5))
        await upload.discard()
        assert await store.file("t", "file-gone") is None
        with pytest.raises(JobStateError, match="send the file again"):
            await upload.write(b"y" * store.chunk_bytes)
        await put(store, b"1\n", file_id="file-kept")
        kept = await store.file("t", "file-kept")
        assert kept is not None
        await store.sweep_uploads(idle_s=0)
        assert await store.file("t", "file-kept") == kept

    run(main())


def test_an_upload_idle_too_long_is_swept_and_a_late_chunk_is_refused(kit: StoreKit, run: Run):
    """The sweep removes uploads idle past idle_s, and only those; their next write fails."""

    async def main() -> None:
        store = files(kit.open())
        store.chunk_bytes = 4
        idle = await store.upload("t", "file-idle", created_at=T0)
        await idle.write(b"1234")
        kit.wall.advance(50)
        busy = await store.upload("t", "file-busy", created_at=T0)
        await busy.write(b"5678")
        kit.wall.advance(20)
        assert await store.sweep_uploads(idle_s=60) == 1  # idle for 70 s; busy for 20 s
        with pytest.raises(JobStateError, match="removed"):
            await idle.write(b"9999")
        await busy.write(b"9999")
        assert (await busy.publish(items=0)).chunks == 2

    run(main())


def test_a_tenant_sees_only_its_own_files_and_deletes_only_them(kit: StoreKit, run: Run):
    """Another tenant's file is not found, not listed, not deleted; a delete takes its chunks."""

    async def main() -> None:
        store = files(kit.open())
        await put(store, b"1\n2\n", tenant="acme", file_id="file-a")
        assert await store.file("globex", "file-a") is None
        assert await store.files("globex") == []
        assert not await store.delete_file("globex", "file-a")
        assert await store.delete_file("acme", "file-a")
        assert await store.file("acme", "file-a") is None
        assert not await store.delete_file("acme", "file-a")

    run(main())


def test_files_are_listed_newest_first_and_by_purpose(kit: StoreKit, run: Run):
    """files() orders by creation time, newest first, and filters by purpose."""

    async def main() -> None:
        store = files(kit.open())
        for n, purpose in enumerate(["batch", "", "batch"]):
            upload = await store.upload("t", f"file-{n}", created_at=T0 + n, purpose=purpose)
            await upload.write(b"{}\n")
            await upload.publish(items=1)
        assert [f.id for f in await store.files("t")] == ["file-2", "file-1", "file-0"]
        assert [f.id for f in await store.files("t", purpose="batch")] == ["file-2", "file-0"]

    run(main())


def test_a_job_is_made_from_a_files_lines_in_the_transaction_that_creates_it(
    kit: StoreKit, run: Run
):
    """Every non-blank line becomes an item, in order; a bad line or a foreign file: no job."""
    lines = b'{"n": 0}\n\n{"n": 1}\r\n  \n{"n": 2}'

    async def main() -> None:
        store = kit.open()
        files(store).chunk_bytes = 5
        await put(files(store), lines, tenant="acme", file_id="file-in")
        await put(files(store), b'{"n": 0}\n{oops\n', tenant="acme", file_id="file-bad")
        jobs = Jobs(store)
        numbers: list[int] = []

        def item(number: int, line: bytes) -> Any:
            numbers.append(number)
            return json.loads(line)

        job = await jobs.submit("t", FileItems("file-in", item), tenant="acme")
        assert job.counts.total == 3
        assert [i.input for i in await store.items(job.id)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert numbers == [1, 3, 5]
        for file_id, tenant, match in [
            ("file-bad", "acme", "Expecting property name"),
            ("file-in", "globex", "no file 'file-in'"),
            ("file-none", "acme", "no file 'file-none'"),
        ]:
            with pytest.raises((InvalidJob, ValueError), match=match):
                await jobs.submit("t", FileItems(file_id, item), tenant=tenant)
        assert [j.id for j in await store.list_jobs()] == [job.id]

    run(main())


def test_a_line_over_the_limit_refuses_the_job_naming_it(kit: StoreKit, run: Run):
    """A line longer than max_line_bytes is never held whole: the job is refused at its number."""

    async def main() -> None:
        store = kit.open()
        await put(files(store), b"1\n" + b"2" * 100 + b"\n3\n", file_id="file-long")
        spec = FileItems("file-long", lambda _n, line: int(line), max_line_bytes=10)
        with pytest.raises(InvalidJob, match="line 2 of file-long is over 10 bytes"):
            await Jobs(store).submit("t", spec, tenant="t")

    run(main())


def row(batch_id: str, *, tenant: str = "t", job_id: str | None = None, **more: Any) -> BatchRow:
    values: dict[str, Any] = {
        "id": batch_id,
        "tenant": tenant,
        "kind": "openai",
        "job_id": job_id,
        "created_at": T0,
        "expires_at": T0 + 100,
        "ended": False,
        "record": "{}",
    }
    return BatchRow(**(values | more))


def test_batch_records_are_kept_per_tenant_and_kind_newest_first(kit: StoreKit, run: Run):
    """add, get, list and delete: a record is found only under its tenant and kind."""

    async def main() -> None:
        store = files(kit.open())
        await store.add_batch(row("b1"))
        await store.add_batch(row("b2", created_at=T0 + 1))
        await store.add_batch(row("m1", kind="anthropic"))
        await store.add_batch(row("x1", tenant="other"))
        with pytest.raises(JobStateError):
            await store.add_batch(row("b1"))
        assert await store.batch("t", "openai", "b1") == row("b1")
        assert await store.batch("t", "anthropic", "b1") is None
        assert await store.batch("other", "openai", "b1") is None
        assert [r.id for r in await store.batches("t", "openai")] == ["b2", "b1"]
        assert [r.id for r in await store.batches("t", "anthropic")] == ["m1"]
        assert not await store.delete_batch("other", "openai", "b1")
        assert await store.delete_batch("t", "openai", "b1")
        assert await store.batch("t", "openai", "b1") is None

    run(main())


def test_due_batches_are_those_not_ended_whose_time_is_up(kit: StoreKit, run: Run):
    """due_batches: every tenant's, of one kind, not ended, expired by then; and the next due."""

    async def main() -> None:
        store = files(kit.open())
        await store.add_batch(row("b-due", expires_at=T0 + 10))
        await store.add_batch(row("b-ended", expires_at=T0 + 5, ended=True))
        await store.add_batch(row("b-other-tenant", tenant="o", expires_at=T0 + 20))
        await store.add_batch(row("b-later", expires_at=T0 + 50))
        await store.add_batch(row("m-due", kind="anthropic", expires_at=T0 + 1))
        due, following = await store.due_batches("openai", due=T0 + 30)
        assert [r.id for r in due] == ["b-due", "b-other-tenant"]
        assert following == T0 + 50
        assert await store.due_batches("openai", due=T0) == ([], T0 + 10)

    run(main())


def test_a_change_of_a_record_publishes_its_files_and_cancels_its_job_or_does_neither(
    kit: StoreKit, run: Run
):
    """change_batch: written, files made visible, the job cancelled, all at once; or nothing."""

    async def main() -> None:
        store = kit.open()
        job = await Jobs(store).submit("t", [1, 2], tenant="t")
        f = files(store)
        await f.add_batch(row("b1", job_id=job.id))
        kept = await f.upload("t", "file-out", created_at=T0)
        await kept.write(b'{"ok": 1}\n')
        written = await kept.close(items=1)
        dropped = await f.upload("t", "file-drop", created_at=T0)
        await dropped.write(b"{}\n")
        refused = await dropped.close(items=1)

        def leave(_: BatchRow) -> None:
            return None

        before, no_job = await f.change_batch("t", "openai", "b1", leave, publish=[refused])
        assert before == row("b1", job_id=job.id)
        assert no_job is None
        assert await f.file("t", "file-drop") is None
        with pytest.raises(JobStateError):
            await f.change_batch("t", "openai", "b1", lambda r: r, publish=[refused])

        def end(r: BatchRow) -> BatchRow:
            return BatchRow(**{**_fields(r), "ended": True, "record": '{"done": 1}'})

        after, cancelled = await f.change_batch(
            "t", "openai", "b1", end, cancel_job=True, publish=[written]
        )
        assert after is not None
        assert (after.ended, after.record) == (True, '{"done": 1}')
        assert await f.batch("t", "openai", "b1") == after
        assert cancelled is not None
        assert cancelled.status == "cancelled"
        assert await content(f, "t", "file-out") == b'{"ok": 1}\n'
        missing = await f.change_batch("o", "openai", "b1", end)
        assert missing == (None, None)

    run(main())


def _fields(r: BatchRow) -> dict[str, Any]:
    return {name: getattr(r, name) for name in BatchRow.__slots__}


def test_changes_of_one_batch_from_many_handles_take_turns(kit: StoreKit, run: Run):
    """20 claims at once from 4 handles, each "take it if nobody has": exactly one takes it."""

    async def main() -> list[bool]:
        handles = [files(kit.open()) for _ in range(4)]
        await handles[0].add_batch(row("b1"))

        async def claim(n: int) -> bool:
            def take(r: BatchRow) -> BatchRow | None:
                if json.loads(r.record).get("owner") is not None:
                    return None
                return BatchRow(**{**_fields(r), "record": json.dumps({"owner": n})})

            after, _ = await handles[n % 4].change_batch("t", "openai", "b1", take)
            assert after is not None
            return bool(json.loads(after.record)["owner"] == n)

        return list(await asyncio.gather(*(claim(n) for n in range(20))))

    taken = run(main())
    assert isinstance(taken, list)
    assert sum(taken) == 1


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"a\nb", b"c\n", b"\nd"], [b"a", b"bc", b"", b"d"]),
        ([b"abcdefgh\n", b"x\n"], [b"abcd", b"x"]),
        ([b"ab", b"cdef", b"gh", b"\nx"], [b"abcd", b"x"]),
        ([b"", b"a\n"], [b"a"]),
    ],
)
def test_lines_are_split_across_chunks_and_a_long_one_is_cut(chunks, lines):
    """split_lines joins a line across chunks and keeps only max + 1 bytes of a long one."""

    async def main() -> list[bytes]:
        async def source() -> Any:
            for c in chunks:
                yield c

        return [line async for line in split_lines(source(), 3)]

    assert asyncio.run(main()) == lines
