"""Partial uploads: none outlives its upload, nor the process that was writing it.

A part file (``.file-<id>.part``) is locked by its writer; at start the service removes the
parts nobody holds (a killed process's) and leaves the ones another process is writing.
"""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.service.files import Files
from conveyor.service.parts import open_part, sweep_parts

from .conftest import api, config

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="flock: POSIX only")


def _leftovers(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tenant folder with a killed upload's part (and its metadata) and a whole file."""
    folder = tmp_path / "files" / "0123456789abcdef01234567"
    folder.mkdir(parents=True)
    dead = "file-" + "d" * 32
    part = folder / f".{dead}.part"
    part.write_bytes(b'{"half": ')
    meta = folder / f"{dead}.json"  # written just before the kill, the data never renamed
    meta.write_text("{}")
    whole = folder / ("file-" + "a" * 32 + ".jsonl")
    whole.write_bytes(b"1\n")
    (folder / ("file-" + "a" * 32 + ".json")).write_text("{}")
    return part, meta, whole


def test_a_part_left_by_a_killed_process_is_removed_at_start(tmp_path):
    """The service's start removes an unheld part and its orphan metadata; whole files stay."""
    part, meta, whole = _leftovers(tmp_path)

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            assert not part.exists()
            assert not meta.exists()
            assert whole.exists()
            r = await a.client.post("/v1/files", content=b"1\n2\n")
            assert r.status_code == 201, r.text

    asyncio.run(main())
    assert not list((tmp_path / "files").rglob(".*.part"))


@posix_only
def test_a_part_another_process_is_writing_is_kept(tmp_path):
    """A part whose lock is held (a live upload elsewhere) survives the sweep; freed, it goes."""
    part, _, _ = _leftovers(tmp_path)
    part.unlink()
    held = open_part(part)  # another open file description: as another process holds it
    try:
        held.write(b"[1, 2")
        assert sweep_parts(tmp_path / "files") == 0
        assert part.exists()
    finally:
        held.close()
    assert sweep_parts(tmp_path / "files") == 1
    assert not part.exists()


def test_a_second_service_starting_on_the_same_folder_keeps_the_first_ones_upload(tmp_path):
    """Two services share the files folder: one starting mid-upload of the other removes nothing."""
    gate, started = asyncio.Event(), asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        started.set()  # the part is made before the body is read
        yield b'{"n": 1}\n'
        await gate.wait()
        yield b'{"n": 2}\n'

    async def main() -> None:
        async with api(config(tmp_path)) as first:
            files: Files = first.asgi.state.service.files
            upload = asyncio.create_task(files.save("default", chunks(), max_bytes=1 << 20))
            await started.wait()
            assert len(list((tmp_path / "files").rglob(".*.part"))) == 1
            async with api(config(tmp_path)):
                assert len(list((tmp_path / "files").rglob(".*.part"))) == 1
            gate.set()
            info = await upload
            assert info.items == 2
            assert list(files.items("default", info.id)) == [{"n": 1}, {"n": 2}]

    asyncio.run(main())
    assert not list((tmp_path / "files").rglob(".*.part"))


@pytest.mark.parametrize("where", ["mid-body", "at the commit"])
def test_a_cancelled_upload_leaves_nothing_behind_at_once(tmp_path, where):
    """Cancelled while receiving or while being renamed into place: no part, no file, no record."""
    files = Files(tmp_path / "files")

    async def main() -> None:
        stalled = asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            yield b"1\n"
            if where == "mid-body":
                stalled.set()
                await asyncio.Event().wait()  # the client stalls: cancelled here
            else:
                # The body ends and the task is cancelled: the next wait is the commit's.
                task = asyncio.current_task()
                assert task is not None
                task.cancel()

        upload = asyncio.create_task(files.save("default", chunks(), max_bytes=1 << 20))
        if where == "mid-body":
            await stalled.wait()
            assert len(list((tmp_path / "files").rglob(".*.part"))) == 1
            upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload

    asyncio.run(main())
    assert [p.name for p in (tmp_path / "files").rglob("*") if p.is_file()] == []


def test_a_failed_upload_removes_its_part_at_once(tmp_path):
    """Over max_file_bytes (413) or a bad line (422): the part is gone when the answer comes."""

    async def main() -> None:
        async with api(config(tmp_path, max_file_bytes=10)) as a:
            r = await a.client.post("/v1/files", content=b"1\n" * 20)
            assert r.status_code == 413
            r = await a.client.post("/v1/files", content=b"{bad\n")
            assert r.status_code == 422
            assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []

    asyncio.run(main())


@posix_only
def test_a_part_is_created_new_and_locked_while_open(tmp_path):
    """open_part refuses to reuse an existing name and holds the lock while open."""
    import fcntl

    path = tmp_path / ".file-x.part"
    out = open_part(path)
    try:
        other = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
        with pytest.raises(FileExistsError):
            open_part(path)
    finally:
        out.close()
