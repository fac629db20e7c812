"""The results file: whole lines, a torn last line cut, atomic rewrites, one run at a time."""

import asyncio
import json
import os
from pathlib import Path

import pytest

from conveyor.http import OutputError
from conveyor.http.output import ResultFile, check_writable, write_text_atomic


def result(custom_id: str, *, ok: bool = True) -> str:
    error = None if ok else {"code": "http_500", "message": "boom"}
    return json.dumps({"custom_id": custom_id, "response": None, "error": error})


def load(results: ResultFile, **kwargs) -> tuple[list[tuple[str, bool]], object]:
    seen: list[tuple[str, bool]] = []
    loaded = results.load(lambda cid, ok: seen.append((cid, ok)), **kwargs)
    return seen, loaded


def test_each_result_is_appended_as_one_whole_line(tmp_path: Path):
    """write() appends the line and its newline; a new file is created."""
    path = tmp_path / "out.jsonl"
    results = ResultFile.open(path)
    results.write(result("a"))
    results.write(result("b"))
    results.close()
    assert path.read_text() == result("a") + "\n" + result("b") + "\n"


def test_a_torn_last_line_is_cut_off(tmp_path: Path):
    """A last line without its newline (a kill -9 mid-write) is removed; earlier ones stay."""
    path = tmp_path / "out.jsonl"
    path.write_text(result("a") + "\n" + result("b")[:10])
    results = ResultFile.open(path)
    seen, loaded = load(results)
    results.write(result("c"))
    results.close()
    assert seen == [("a", True)]
    assert loaded.torn_bytes == 10  # type: ignore[attr-defined]
    assert path.read_text() == result("a") + "\n" + result("c") + "\n"


def test_a_line_that_is_not_a_result_is_refused(tmp_path: Path):
    """A complete line that is not a result (another file?) is refused, naming the line."""
    path = tmp_path / "out.jsonl"
    path.write_text(result("a") + "\n" + '{"hello": 1}\n')
    results = ResultFile.open(path)
    with pytest.raises(OutputError, match=r"out.jsonl line 2 is not a result of conveyor run"):
        load(results)
    results.close()


def test_dropping_results_rewrites_the_file_atomically(tmp_path: Path):
    """Dropped results vanish through a rename; the rest and the file's mode are kept."""
    path = tmp_path / "out.jsonl"
    path.write_text(result("a") + "\n" + result("b", ok=False) + "\n" + result("c")[:5])
    path.chmod(0o640)
    results = ResultFile.open(path)
    seen, loaded = load(results, drop=lambda cid, ok: not ok)
    results.write(result("b"))
    results.close()
    assert seen == [("a", True)]
    assert (loaded.dropped, loaded.torn_bytes) == (1, 5)  # type: ignore[attr-defined]
    assert path.read_text() == result("a") + "\n" + result("b") + "\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left


def test_nothing_to_drop_leaves_the_file_alone(tmp_path: Path):
    """Without anything to drop, the file is not rewritten (same inode)."""
    path = tmp_path / "out.jsonl"
    path.write_text(result("a") + "\n")
    inode = path.stat().st_ino
    results = ResultFile.open(path)
    load(results, drop=lambda cid, ok: False)
    results.close()
    assert path.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_a_rewrite_that_cannot_make_its_temporary_file_is_an_output_error(tmp_path: Path):
    """The temporary file of a rewrite not creatable: OutputError, the results untouched."""
    path = tmp_path / "out.jsonl"
    path.write_text(result("a", ok=False) + "\n")
    (tmp_path / ".out.jsonl.conveyor-tmp").mkdir()  # in the way, like a folder without rights
    results = ResultFile.open(path)
    message = r"cannot rewrite .*out\.jsonl without its failed results: Is a directory"
    with pytest.raises(OutputError, match=message):
        load(results, drop=lambda cid, ok: not ok)
    results.close()
    assert path.read_text() == result("a", ok=False) + "\n"


def test_a_second_run_on_the_same_file_is_refused(tmp_path: Path):
    """The file is locked: another run writing it is refused with the reason."""
    path = tmp_path / "out.jsonl"
    first = ResultFile.open(path)
    with pytest.raises(OutputError, match="another conveyor run is writing"):
        ResultFile.open(path)
    first.close()
    ResultFile.open(path).close()  # free again once closed


def test_the_lock_follows_a_rewrite(tmp_path: Path):
    """After a rewrite, the new file is locked too."""
    path = tmp_path / "out.jsonl"
    path.write_text(result("a", ok=False) + "\n")
    results = ResultFile.open(path)
    load(results, drop=lambda cid, ok: True)
    with pytest.raises(OutputError, match="another conveyor run"):
        ResultFile.open(path)
    results.close()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing/out.jsonl", "the folder .*missing does not exist; create it"),
        (".", "is a directory: give a file name"),
    ],
)
def test_unwritable_outputs_are_refused(tmp_path: Path, name, message):
    """A missing folder or a directory is refused before anything is sent, saying why."""
    with pytest.raises(OutputError, match=message):
        ResultFile.open(tmp_path / name)


def test_a_file_that_cannot_be_opened_is_refused(tmp_path: Path):
    """An OS refusal (here: a name too long) is reported with the OS's reason and the fix."""
    with pytest.raises(
        OutputError, match=r"cannot write .*: File name too long; choose another -o"
    ):
        ResultFile.open(tmp_path / ("x" * 300))


def test_a_failed_write_says_the_results_are_kept(tmp_path: Path):
    """A write error (disk full, ...) raises OutputError saying how to resume."""
    results = ResultFile.open(tmp_path / "out.jsonl")
    os.close(results._fd)
    results._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail with EBADF
    with pytest.raises(OutputError, match="the results written so far are kept"):
        results.write(result("a"))
    results.close()


def test_summary_paths_are_checked_and_written_atomically(tmp_path: Path):
    """check_writable refuses a missing folder; write_text_atomic leaves no temporary file."""
    with pytest.raises(OutputError, match=r"folder .* does not exist"):
        check_writable(tmp_path / "no" / "s.json", "--summary-json")
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path, "--summary-json")
    target = tmp_path / "s.json"
    check_writable(target, "--summary-json")
    write_text_atomic(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_results_are_read_in_the_order_written_here_or_any_other(tmp_path: Path):
    """The fast read of a line's head and the full read of other orders agree."""
    from conveyor.http.results import result_line

    path = tmp_path / "out.jsonl"
    ours_ok = result_line("a", response=None, error=None, attempts=1, latency_s=0.1)
    ours_failed = result_line("b", response=None, error=("timeout", "x"), attempts=1, latency_s=1)
    other = json.dumps({"error": {"code": "x"}, "custom_id": "c", "response": None})
    head_only = '{"custom_id":"d","error":null,'  # complete head, but the line is broken after
    path.write_text(f"{ours_ok}\n{ours_failed}\n{other}\n")
    results = ResultFile.open(path)
    seen, _ = load(results)
    results.close()
    assert seen == [("a", True), ("b", False), ("c", False)]
    path.write_text(head_only + "\n")
    results = ResultFile.open(path)
    seen, _ = load(results)  # read by its head: a line is only ever written whole
    results.close()
    assert seen == [("d", True)]


def test_results_of_one_pass_of_the_loop_are_written_together_at_its_end(tmp_path: Path):
    """In a running loop, results wait for the end of the loop's pass, then go out in one write."""
    path = tmp_path / "out.jsonl"
    results = ResultFile.open(path)
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: memoryview) -> int:
        writes.append(bytes(data).count(b"\n"))
        return real_write(fd, data)

    async def main() -> tuple[bytes, bytes]:
        results.write(result("a"))
        results.write(result("b"))
        during = path.read_bytes()
        await asyncio.sleep(0)  # the end of this pass of the loop
        return during, path.read_bytes()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "write", counting_write)
        during, after = asyncio.run(main())
    results.close()
    assert during == b""
    assert after.decode().splitlines() == [result("a"), result("b")]
    assert writes == [2]
    assert results.written == 2


def test_a_write_failed_at_the_end_of_a_pass_is_raised_by_the_next_write(tmp_path: Path):
    """Nobody hears a failure at the end of a pass: the next write raises it, and only once."""
    results = ResultFile.open(tmp_path / "out.jsonl")
    fd = results._fd
    results._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail with EBADF

    async def main() -> None:
        results.write(result("a"))
        await asyncio.sleep(0)
        with pytest.raises(OutputError, match="the results written so far are kept"):
            results.write(result("b"))

    asyncio.run(main())
    results.close()  # already told: closing does not raise it again
    os.close(fd)


def test_a_write_failed_at_the_end_of_the_last_pass_is_raised_by_close(tmp_path: Path):
    """A failure no later write heard of is raised when the file is closed."""
    results = ResultFile.open(tmp_path / "out.jsonl")
    fd = results._fd
    results._fd = os.open(os.devnull, os.O_RDONLY)

    async def main() -> None:
        results.write(result("a"))
        await asyncio.sleep(0)

    asyncio.run(main())
    with pytest.raises(OutputError, match=r"writing .*out.jsonl failed"):
        results.close()
    os.close(fd)
