"""Before anything is sent: read the results so far, check the whole input, decide what runs.

`prepare` refuses (with `InputError` / `OutputError`, nothing sent) an output it cannot write
or that another run holds, an input it cannot read, duplicate custom_ids, and relative urls
without a base URL. Otherwise it returns a `Plan`: the results file opened and locked (a torn
last line cut off; with ``retry_failed``, the failed results of this input removed), how many
requests are already done, how many will run, and warnings to show.

Memory stays small for huge inputs: the input and the results are read as streams, and an id
is kept as a 16-byte digest (`IdDigests`), whatever its length.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import InputError, OutputError
from .ids import IdDigests, digest
from .output import ResultFile
from .request import InvalidLine, Request, parse_line

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .config import BatchFiles, Endpoint

__all__ = ["Plan", "prepare"]

# How many examples an error or a warning lists.
_EXAMPLES = 5


@dataclass(kw_only=True)
class Plan:
    """What a run will do; holds the results file open and locked until `close`."""

    files: BatchFiles
    endpoint: Endpoint
    results: ResultFile
    requests: int = 0  # request lines in the input (valid or not)
    to_run: int = 0  # of which not in the results yet
    already_done: int = 0  # of which in the results already (skipped)
    failed_before: int = 0  # of those, failed (re-run them with retry_failed)
    dropped: int = 0  # failed results removed to re-run them (retry_failed)
    torn_bytes: int = 0  # a torn last line cut off the results
    warnings: list[str] = field(default_factory=list)
    # The APIs the input's requests call (`conveyor.http.apis.api_of`), each with its first line.
    apis: dict[str, int] = field(default_factory=dict)
    # The ids in the results (flag: succeeded), and the failed ones to run again.
    results_ids: IdDigests = field(default_factory=IdDigests, repr=False)
    rerun: IdDigests | None = field(default=None, repr=False)

    def is_done(self, custom_id: str) -> bool:
        """Whether the request already has its result (and is not to be run again)."""
        key = digest(custom_id)
        ok = self.results_ids.get(key)
        if ok is None:
            return False
        return ok or self.rerun is None or key not in self.rerun

    def lines(self) -> Iterator[Request | InvalidLine]:
        """Read the input again, yielding what is not done yet (the run's items)."""
        items = _parsed(self.files.input, self.endpoint, identify_only=False)
        if not len(self.results_ids):  # a fresh run: nothing to skip, no id to hash
            yield from items
            return
        is_done = self.is_done
        for item in items:
            if not is_done(item.custom_id):
                yield item

    def close(self) -> None:
        """Close (and unlock) the results file."""
        self.results.close()


def _parsed(
    path: Path, endpoint: Endpoint, *, identify_only: bool = True
) -> Iterator[Request | InvalidLine]:
    """Every line's request; only ids and validity unless `identify_only` is False."""
    base_url, default_url = endpoint.base_url, endpoint.url
    try:
        with path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                item = parse_line(
                    raw,
                    number,
                    base_url=base_url,
                    default_url=default_url,
                    identify_only=identify_only,
                )
                if item is not None:
                    yield item
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}; check the path"
        raise InputError(msg) from None


def prepare(files: BatchFiles, endpoint: Endpoint) -> Plan:
    """Check the input and the results file; return the `Plan`, or refuse (nothing sent)."""
    source = files.input
    try:
        if not source.is_file():
            if source.is_dir():
                what = "is a directory"
            elif source.exists() or str(source) == "-":  # a pipe, stdin: read only once
                what = "is not a regular file: the run must read it twice (to check, then send)"
            else:
                what = "does not exist"
            msg = f"the requests file {source} {what}: give the path of a JSONL file"
            raise InputError(msg)
        same = files.output.exists() and source.samefile(files.output)
    except OSError as exc:
        msg = f"cannot read {source}: {exc.strerror}; check the path"
        raise InputError(msg) from None
    if same:
        msg = f"-o {files.output} is the requests file itself: write the results to another file"
        raise OutputError(msg)
    created = not files.output.exists()
    results = ResultFile.open(files.output)
    try:
        return _plan(files, endpoint, results)
    except BaseException:
        if created:  # refused before sending: leave no empty results file behind
            with contextlib.suppress(OSError):
                if files.output.stat().st_size == 0:
                    files.output.unlink()
        results.close()
        raise


def _plan(files: BatchFiles, endpoint: Endpoint, results: ResultFile) -> Plan:
    plan = Plan(files=files, endpoint=endpoint, results=results)
    # The results so far, read-only for now.
    known = plan.results_ids
    loaded = results.load(lambda custom_id, ok: known.add(digest(custom_id), flag=ok))
    known.freeze()
    plan.torn_bytes = loaded.torn_bytes
    if known.repeated:
        plan.warnings.append(
            f"{files.output} holds {len(known.repeated)} custom_id(s) more than once; they"
            " were not written by one conveyor run: check the file"
        )
    rerun = _scan_input(plan)
    if rerun is not None:
        # Remove the failed results of this input, so that they run again like new ones.
        # Atomic: the file holds each custom_id at most once at every moment.
        loaded = results.load(
            lambda _cid, _ok: None, drop=lambda cid, ok: not ok and digest(cid) in rerun
        )
        plan.dropped = loaded.dropped
        plan.rerun = rerun
    return plan


def _scan_input(plan: Plan) -> IdDigests | None:
    """Count and check every line; return the failed ids to run again (retry_failed)."""
    files = plan.files
    known = plan.results_ids
    ids = IdDigests()
    rerun = IdDigests() if files.retry_failed else None
    unnamed: list[int] = []
    unnamed_count = 0
    apis = plan.apis
    for item in _parsed(files.input, plan.endpoint):
        plan.requests += 1
        key = digest(item.custom_id)
        ids.add(key)
        if isinstance(item, Request):
            if item.api not in apis:
                apis[item.api] = item.line
            if item.named_by_line:
                unnamed_count += 1
                if len(unnamed) < _EXAMPLES:
                    unnamed.append(item.line)
        ok = known.get(key)
        if ok is None:
            continue
        if not ok and rerun is not None:
            rerun.add(key)
        else:
            plan.already_done += 1
            plan.failed_before += not ok
    plan.to_run = plan.requests - plan.already_done
    ids.freeze()
    _refuse_duplicates(files.input, plan.endpoint, ids.repeated)
    if unnamed_count:
        lines = ", ".join(map(str, unnamed)) + (", ..." if unnamed_count > len(unnamed) else "")
        plan.warnings.append(
            f"{unnamed_count:,} line(s) have no custom_id (lines {lines}): their results are"
            " named line-N after their line number, so keep the lines where they are, or a"
            " resume will not recognise them"
        )
    if rerun is None:
        return None
    rerun.freeze()
    return rerun if len(rerun) else None


def _refuse_duplicates(path: Path, endpoint: Endpoint, suspects: set[int]) -> None:
    """Raise `InputError` listing duplicate custom_ids with their line numbers, if any."""
    if not suspects:
        return
    # Name them: read the input again, keeping only the lines concerned.
    where: dict[str, list[int]] = {}
    unnamed: dict[str, int] = {}  # a line without custom_id, named line-N, that collides
    for item in _parsed(path, endpoint):
        if digest(item.custom_id) in suspects:
            where.setdefault(item.custom_id, []).append(item.line)
            if item.named_by_line:
                unnamed[item.custom_id] = item.line
    duplicates = [(cid, lines) for cid, lines in where.items() if len(lines) > 1]
    if not duplicates:
        return
    shown = "; ".join(
        f"{cid!r} on lines {', '.join(map(str, lines[:_EXAMPLES]))}"
        for cid, lines in duplicates[:_EXAMPLES]
    )
    more = f" (and {len(duplicates) - _EXAMPLES} more)" if len(duplicates) > _EXAMPLES else ""
    named = [unnamed[cid] for cid, _ in duplicates[:_EXAMPLES] if cid in unnamed]
    why = (
        f" (line {', '.join(map(str, named))} has no custom_id and is named line-N after its"
        " number)"
        if named
        else ""
    )
    msg = (
        f"{path} has {len(duplicates)} duplicate custom_id(s): {shown}{more}{why}. Each"
        " request needs its own custom_id, or resuming could not tell them apart; rename them"
        " and run again (nothing was sent)"
    )
    raise InputError(msg)
