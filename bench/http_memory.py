"""`conveyor run` on a million lines: bounded memory, and exactly once across a kill -9.

Checks two promises of the batch runner, end to end, through its command line:

- a 1,000,000-line input runs in bounded memory (under 200 MB peak RSS), reading and writing
  as it goes;
- after a kill -9 the output holds every custom_id at most once and no torn line (but for a
  torn last line, which the next start cuts off); after the resumed run, exactly once.

It writes N chat requests in the OpenAI batch format to a temporary folder, starts the mock API
(`conveyor.mockapi.run_in_process`: no latency, no limits, two processes), and runs
``conveyor run IN -o OUT --base-url URL --concurrency 100 --progress plain`` as a child process,
four times:

1. ``full``: the whole input into a fresh output;
2. ``killed``: the same into another fresh output, sent SIGKILL once about half the results
   are written;
3. ``resume``: the same command again on that output;
4. ``noop``: once more, with every request done (a resume with nothing to send).

Only the child's memory is measured: its peak RSS is the larger of its ``VmHWM`` polled from
/proc while it runs and the ``ru_maxrss`` that `os.wait4` reports for it (the only figure left
for a process killed with SIGKILL). The output is checked here by streaming it, with a count
per request index. Every wait is bounded by a deadline and a count; all traffic goes to
127.0.0.1.

Run it with ``.venv/bin/python bench/http_memory.py`` (``--lines 20000`` for a quick round).
It prints a table and PASS/FAIL lines and exits 1 if any check fails. A million lines took
4 minutes on the 2-core development machine, and need about 600 MB of disk (the requests,
177 MB, and one results file, 413 MB, at a time).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which aiohttp imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse
import contextlib
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from conveyor.mockapi import MockConfig, run_in_process

if TYPE_CHECKING:
    from collections.abc import Callable

LIMIT_MB = 200.0
CONCURRENCY = 100
#: How often the child's memory (and, while waiting to kill it, the output) is sampled.
POLL_S = 0.05


@dataclass
class Phase:
    """One run of the child: what it did and what it cost."""

    name: str
    lines: int = 0  # results written by this run
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    exit_status: int | None = None  # negative: killed by that signal
    log: Path | None = None


@dataclass
class Check:
    """What reading an output file back found."""

    lines: int = 0  # whole lines
    torn_bytes: int = 0  # bytes after the last newline
    bad_lines: int = 0  # whole lines that are not a result of this input
    duplicates: int = 0  # results beyond the first for an id
    distinct: int = 0  # ids with a result
    failed: int = 0  # results with an error
    examples: list[str] = field(default_factory=list)


def conveyor_command() -> list[str]:
    """The `conveyor` console script of this interpreter (pyproject's [project.scripts])."""
    script = Path(sys.executable).parent / "conveyor"
    if script.is_file():
        return [str(script)]
    found = shutil.which("conveyor")
    if found is not None:
        return [found]
    return [sys.executable, "-m", "conveyor"]  # src/conveyor/__main__.py runs the CLI too


def write_requests(path: Path, count: int) -> int:
    """Write `count` chat requests, one JSON per line; return the file's size in bytes."""
    chunk = 10_000
    with path.open("w", encoding="utf-8") as out:
        for start in range(0, count, chunk):
            out.writelines(
                f'{{"custom_id": "req-{i}", "method": "POST", "url": "/v1/chat/completions",'
                f' "body": {{"model": "mock", "messages": [{{"role": "user", "content":'
                f' "hi {i}"}}], "max_tokens": 1}}}}\n'
                for i in range(start, min(start + chunk, count))
            )
    return path.stat().st_size


def vm_hwm_kb(pid: int) -> int:
    """The peak resident set size of a running process, in kB (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0  # a zombie: no memory any more


class LineCounter:
    """Counts the newlines of a growing file, reading only what was added since last time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def update(self) -> int:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as f:
            f.seek(self.offset)
            for _ in range(1_000):  # bounded: 1,000 x 1 MB per call at most
                data = f.read(1 << 20)
                if not data:
                    break
                self.offset += len(data)
                self.lines += data.count(b"\n")
        return self.lines


def run_child(
    phase: Phase,
    command: list[str],
    folder: Path,
    *,
    timeout_s: float,
    kill_at_lines: int | None = None,
    output: Path | None = None,
) -> None:
    """Run `command` to its end (or SIGKILL it once `output` has `kill_at_lines` lines)."""
    log = folder / f"{phase.name}.log"
    phase.log = log
    counter = LineCounter(output) if output is not None and kill_at_lines is not None else None
    with log.open("wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen(  # noqa: S603 - the project's own command, fixed arguments
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = started + timeout_s
        peak_kb = 0
        status = None
        usage = None
        killed = False
        for _ in range(int(timeout_s / POLL_S) + 1_000):
            peak_kb = max(peak_kb, vm_hwm_kb(child.pid))
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                break
            if (
                not killed
                and counter is not None
                and kill_at_lines is not None
                and counter.update() >= kill_at_lines
            ):
                os.kill(child.pid, signal.SIGKILL)
                killed = True
            if time.perf_counter() > deadline:
                print(f"  {phase.name}: still running after {timeout_s:.0f} s: killed")
                os.kill(child.pid, signal.SIGKILL)
                killed = True
                deadline = float("inf")
            time.sleep(POLL_S)
        else:  # the loop ran out of count before the child ended: end it
            os.kill(child.pid, signal.SIGKILL)
            _, status, usage = os.wait4(child.pid, 0)
        phase.seconds = time.perf_counter() - started
    assert status is not None
    assert usage is not None
    child.returncode = phase.exit_status = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in kB on Linux.
    phase.peak_rss_mb = max(peak_kb, usage.ru_maxrss) / 1024


def result_head(raw: bytes, count: int, decode: Callable[[bytes], Any]) -> tuple[int, bool] | None:
    """The request index and failure of a result line of this input, else None."""
    try:
        record = decode(raw)
        custom_id = record["custom_id"]
        error = record["error"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return None
    if not isinstance(custom_id, str) or not custom_id.startswith("req-"):
        return None
    number = custom_id.removeprefix("req-")
    if not number.isdigit() or int(number) >= count:
        return None
    return int(number), error is not None


def check_output(path: Path, count: int) -> Check:
    """Read the results back (streaming); count each request's results, and torn bytes."""
    seen = bytearray(count)
    found = Check()
    decode = msgspec.json.Decoder().decode
    with path.open("rb") as lines:
        for raw in lines:
            if not raw.endswith(b"\n"):  # only the last line can lack its newline
                found.torn_bytes = len(raw)
                break
            found.lines += 1
            head = result_head(raw, count, decode)
            if head is None:
                found.bad_lines += 1
                if len(found.examples) < 3:
                    found.examples.append(f"line {found.lines}: {raw[:120]!r}")
                continue
            index, failed = head
            if seen[index]:
                found.duplicates += 1
                if len(found.examples) < 3:
                    found.examples.append(f"line {found.lines}: req-{index} again")
            else:
                found.distinct += 1
            seen[index] = min(seen[index] + 1, 255)
            found.failed += failed
    return found


def tail(path: Path | None, lines: int = 6) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="requests (1,000,000)")
    parser.add_argument(
        "--kill-at", type=float, default=0.5, help="SIGKILL at this share of the results (0.5)"
    )
    parser.add_argument(
        "--phase-timeout", type=float, default=1800.0, help="seconds per run at most (1800)"
    )
    parser.add_argument("--keep", type=Path, help="keep the files in this folder (else a temp)")
    args = parser.parse_args()
    count: int = args.lines
    if count < 1 or not 0 < args.kill_at < 1:
        parser.error("--lines must be >= 1 and --kill-at between 0 and 1")

    conveyor = conveyor_command()
    print(
        f"conveyor run, {count:,} lines, --concurrency {CONCURRENCY}; mock API: 2 processes,"
        f" latency 0, no limits; Python {platform.python_version()}, {os.cpu_count()} CPUs;"
        f" {' '.join(conveyor)}"
    )
    outcomes: list[tuple[bool, str]] = []

    def verdict(ok: bool, text: str) -> None:
        outcomes.append((ok, text))

    phases: list[Phase] = []
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            folder = args.keep
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("full.jsonl", "killed.jsonl"):
                (folder / name).unlink(missing_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="conveyor-")))
        requests = folder / "requests.jsonl"
        started = time.perf_counter()
        size = write_requests(requests, count)
        print(f"wrote {requests} ({size / 1e6:,.1f} MB) in {time.perf_counter() - started:.1f} s")
        base_url = stack.enter_context(run_in_process(MockConfig(latency_ms=0.0), processes=2))
        assert base_url.startswith("http://127.0.0.1:")

        def command(output: Path) -> list[str]:
            return [
                *conveyor,
                "run",
                str(requests),
                "-o",
                str(output),
                "--base-url",
                base_url,
                "--concurrency",
                str(CONCURRENCY),
                "--progress",
                "plain",
            ]

        # 1. The whole input, into a fresh output.
        full_out = folder / "full.jsonl"
        full = Phase("full")
        phases.append(full)
        print(f"{full.name}: running ...", flush=True)
        run_child(full, command(full_out), folder, timeout_s=args.phase_timeout)
        found = check_output(full_out, count)
        full.lines = found.lines
        print(
            f"  exit {full.exit_status}; {found.lines:,} lines, {found.distinct:,} ids,"
            f" {found.duplicates} repeated, {found.failed} failed, {found.bad_lines} bad,"
            f" {found.torn_bytes} torn bytes"
        )
        verdict(full.exit_status == 0, f"full: exit status {full.exit_status} (0 expected)")
        verdict(
            found.lines == count
            and found.distinct == count
            and not (found.duplicates or found.bad_lines or found.torn_bytes or found.failed),
            f"full: every custom_id exactly once, all succeeded, no torn line"
            f" ({found.distinct:,} of {count:,} ids in {found.lines:,} lines)",
        )
        if full.exit_status != 0 or found.examples:
            print(*found.examples, tail(full.log), sep="\n")
        full_out.unlink()  # the disk it takes is not needed any more

        # 2. The same, killed with SIGKILL about half-way.
        killed_out = folder / "killed.jsonl"
        killed = Phase("killed")
        phases.append(killed)
        kill_at = max(1, int(count * args.kill_at))
        print(f"{killed.name}: running, SIGKILL at {kill_at:,} lines ...", flush=True)
        run_child(
            killed,
            command(killed_out),
            folder,
            timeout_s=args.phase_timeout,
            kill_at_lines=kill_at,
            output=killed_out,
        )
        found = check_output(killed_out, count)
        killed.lines = found.lines
        kept = found.distinct
        print(
            f"  exit {killed.exit_status}; {found.lines:,} whole lines, {found.distinct:,} ids,"
            f" {found.duplicates} repeated, {found.bad_lines} bad,"
            f" torn last line: {found.torn_bytes} bytes"
        )
        verdict(
            killed.exit_status == -signal.SIGKILL and 0 < found.lines < count,
            f"killed: ended by SIGKILL part-way (exit {killed.exit_status}, {found.lines:,} of"
            f" {count:,} results written)",
        )
        verdict(
            not (found.duplicates or found.bad_lines),
            f"killed: every custom_id at most once, every whole line a result"
            f" ({found.duplicates} repeated, {found.bad_lines} bad; {found.torn_bytes} bytes"
            " torn at the end, cut off by the resume)",
        )
        if found.examples:
            print(*found.examples, sep="\n")

        # 3. The same command again: resume.
        resume = Phase("resume")
        phases.append(resume)
        print(f"{resume.name}: running ...", flush=True)
        run_child(resume, command(killed_out), folder, timeout_s=args.phase_timeout)
        found = check_output(killed_out, count)
        resume.lines = found.lines - kept
        print(
            f"  exit {resume.exit_status}; {found.lines:,} lines, {found.distinct:,} ids,"
            f" {found.duplicates} repeated, {found.failed} failed, {found.bad_lines} bad,"
            f" {found.torn_bytes} torn bytes"
        )
        log_text = resume.log.read_text(encoding="utf-8", errors="replace") if resume.log else ""
        cut = "cut short by an interruption" in log_text
        print(f"  the resume {'said' if cut else 'did not say'} that it cut off a torn line")
        verdict(resume.exit_status == 0, f"resume: exit status {resume.exit_status} (0 expected)")
        verdict(
            found.lines == count
            and found.distinct == count
            and not (found.duplicates or found.bad_lines or found.torn_bytes or found.failed),
            f"resume: every custom_id exactly once, all succeeded, no torn line"
            f" ({found.distinct:,} of {count:,} ids in {found.lines:,} lines)",
        )
        if resume.exit_status != 0 or found.examples:
            print(*found.examples, tail(resume.log), sep="\n")

        # 4. Once more: everything done, nothing to send (reads the input and the output back).
        noop = Phase("noop")
        phases.append(noop)
        print(f"{noop.name}: running ...", flush=True)
        before = killed_out.stat().st_size
        run_child(noop, command(killed_out), folder, timeout_s=args.phase_timeout)
        after = killed_out.stat().st_size
        found = check_output(killed_out, count)
        noop.lines = found.lines - count
        said = noop.log.read_text(encoding="utf-8") if noop.log else ""
        verdict(
            noop.exit_status == 0
            and found.lines == count
            and after == before
            and "nothing to send" in said,
            f"noop: exit {noop.exit_status}, nothing sent, output unchanged"
            f" ({before:,} -> {after:,} bytes)",
        )

    print()
    print(
        f"| {'phase':<8} | {'lines':>9} | {'seconds':>8} | {'lines/s':>7} | {'peak RSS MB':>11} |"
    )
    print(f"| {'-' * 8} | {'-' * 8}: | {'-' * 7}: | {'-' * 6}: | {'-' * 10}: |")
    for phase in phases:
        rate = phase.lines / phase.seconds if phase.seconds else 0.0
        print(
            f"| {phase.name:<8} | {phase.lines:>9,} | {phase.seconds:>8.1f} | {rate:>7,.0f}"
            f" | {phase.peak_rss_mb:>11.1f} |"
        )
    print()
    for phase in phases:
        verdict(
            0 < phase.peak_rss_mb < LIMIT_MB,
            f"{phase.name}: peak RSS {phase.peak_rss_mb:.1f} MB < {LIMIT_MB:.0f} MB",
        )
    for ok, text in outcomes:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for ok, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
