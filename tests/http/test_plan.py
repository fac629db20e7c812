"""Before sending: the input checked whole, the results read back, what runs decided."""

import json
import os
from pathlib import Path

import pytest

from conveyor.http import BatchFiles, Endpoint, InputError, OutputError, Plan, prepare
from conveyor.http import ids as ids_module
from conveyor.http import plan as plan_module
from conveyor.http.ids import IdDigests, digest

from .helpers import request_line, write_requests

ENDPOINT = Endpoint(base_url="http://127.0.0.1:9")


def result(custom_id: str, *, ok: bool = True) -> str:
    error = None if ok else {"code": "http_500", "message": "boom"}
    return json.dumps({"custom_id": custom_id, "response": None, "error": error}) + "\n"


def plan_for(tmp_path: Path, *, retry_failed: bool = False, endpoint: Endpoint = ENDPOINT) -> Plan:
    files = BatchFiles(
        input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", retry_failed=retry_failed
    )
    return prepare(files, endpoint)


def test_a_fresh_run_plans_every_request(tmp_path: Path):
    """With no results yet, every request runs, in input order."""
    ids = write_requests(tmp_path / "in.jsonl", 5)
    plan = plan_for(tmp_path)
    assert (plan.requests, plan.to_run, plan.already_done) == (5, 5, 0)
    assert [item.custom_id for item in plan.lines()] == ids
    plan.close()
    assert (tmp_path / "out.jsonl").read_text() == ""


def test_resume_skips_results_already_written_and_cuts_a_torn_line(tmp_path: Path):
    """Ids with a result (success or failure) are skipped; a torn last line is cut and re-runs."""
    write_requests(tmp_path / "in.jsonl", 5)
    torn = result("req-3")[:12]
    (tmp_path / "out.jsonl").write_text(result("req-0") + result("req-2", ok=False) + torn)
    plan = plan_for(tmp_path)
    assert (plan.requests, plan.to_run, plan.already_done, plan.failed_before) == (5, 3, 2, 1)
    assert plan.torn_bytes == len(torn)
    assert [item.custom_id for item in plan.lines()] == ["req-1", "req-3", "req-4"]
    plan.close()
    assert (tmp_path / "out.jsonl").read_text() == result("req-0") + result("req-2", ok=False)


def test_retry_failed_removes_the_failed_results_of_this_input(tmp_path: Path):
    """--retry-failed drops failed results of this input (only), so they run again once."""
    write_requests(tmp_path / "in.jsonl", 3)
    (tmp_path / "out.jsonl").write_text(
        result("req-0") + result("req-1", ok=False) + result("other", ok=False)
    )
    plan = plan_for(tmp_path, retry_failed=True)
    assert (plan.to_run, plan.already_done, plan.dropped) == (2, 1, 1)
    assert [item.custom_id for item in plan.lines()] == ["req-1", "req-2"]
    plan.close()
    assert (tmp_path / "out.jsonl").read_text() == result("req-0") + result("other", ok=False)


def test_duplicate_ids_are_refused_before_anything_is_sent(tmp_path: Path):
    """Duplicates are listed by line, a generated line-N name explained; the results untouched."""
    lines = [request_line("a"), request_line("b"), request_line("a"), "", request_line("b")]
    lines += [json.dumps({"url": "/x", "body": {}}), request_line("line-6")]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "out.jsonl").write_text(result("z"))
    with pytest.raises(InputError) as caught:
        plan_for(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'in.jsonl'} has 3 duplicate custom_id(s): 'a' on lines 1, 3; 'b' on lines"
        " 2, 5; 'line-6' on lines 6, 7 (line 6 has no custom_id and is named line-N after its"
        " number). Each request needs its own custom_id, or resuming could not tell them apart;"
        " rename them and run again (nothing was sent)"
    )
    assert (tmp_path / "out.jsonl").read_text() == result("z")
    # The file is unlocked again: a corrected run can start.
    (tmp_path / "in.jsonl").write_text(request_line("a") + "\n")
    plan_for(tmp_path).close()


def test_suspected_duplicates_are_confirmed_against_the_real_ids(tmp_path: Path, monkeypatch):
    """Duplicates are found by digest, then named from the real ids: no false refusal."""
    monkeypatch.setattr(plan_module, "digest", lambda _: 42)
    write_requests(tmp_path / "in.jsonl", 4)
    plan = plan_for(tmp_path)
    assert plan.to_run == 4
    plan.close()


def test_lines_without_custom_id_are_named_and_warned_about(tmp_path: Path):
    """A request without custom_id is named line-N, with one warning listing the lines."""
    lines = [
        request_line("a"),
        json.dumps({"url": "/x", "body": {}}),
        json.dumps({"url": "/x", "body": {}}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    plan = plan_for(tmp_path)
    assert [item.custom_id for item in plan.lines()] == ["a", "line-2", "line-3"]
    assert plan.warnings == [
        (
            "2 line(s) have no custom_id (lines 2, 3): their results are named line-N after"
            " their line number, so keep the lines where they are, or a resume will not"
            " recognise them"
        )
    ]
    plan.close()


def test_invalid_lines_are_planned_not_refused(tmp_path: Path):
    """A malformed line does not stop the run: it is an item that will be written as failed."""
    (tmp_path / "in.jsonl").write_text(request_line("a") + "\n{oops\n" + request_line("b") + "\n")
    plan = plan_for(tmp_path)
    assert plan.to_run == 3
    assert [item.custom_id for item in plan.lines()] == ["a", "line-2", "b"]
    plan.close()


def test_relative_urls_need_a_base_url(tmp_path: Path):
    """Without --base-url a relative url refuses the run, naming the line; the file is unlocked."""
    write_requests(tmp_path / "in.jsonl", 2)
    with pytest.raises(InputError, match=r"^line 1: the url '/v1/chat/completions' is relative"):
        plan_for(tmp_path, endpoint=Endpoint())
    plan_for(tmp_path).close()


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_input_plans_nothing(tmp_path: Path, content):
    """An empty (or blank) input is no error: zero requests."""
    (tmp_path / "in.jsonl").write_text(content)
    plan = plan_for(tmp_path)
    assert (plan.requests, plan.to_run) == (0, 0)
    plan.close()


def test_a_missing_input_is_refused(tmp_path: Path):
    """A requests file that does not exist is refused, and no results file is made."""
    with pytest.raises(
        InputError, match=r"in\.jsonl does not exist: give the path of a JSONL file"
    ):
        plan_for(tmp_path)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_pipe_as_input_is_refused_as_not_a_regular_file(tmp_path: Path):
    """A FIFO or ``-`` (stdin) is refused for what it is, not as a missing file."""
    os.mkfifo(tmp_path / "in.jsonl")
    with pytest.raises(InputError, match=r"in\.jsonl is not a regular file: .* read it twice"):
        plan_for(tmp_path)
    assert not (tmp_path / "out.jsonl").exists()
    files = BatchFiles(input=Path("-"), output=tmp_path / "out.jsonl")
    with pytest.raises(InputError, match=r"requests file - is not a regular file"):
        prepare(files, ENDPOINT)


def test_writing_over_the_input_is_refused(tmp_path: Path):
    """-o naming the requests file itself is refused."""
    write_requests(tmp_path / "in.jsonl", 1)
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "." / "in.jsonl")
    with pytest.raises(OutputError, match="is the requests file itself"):
        prepare(files, ENDPOINT)


def test_results_held_twice_are_warned_about(tmp_path: Path):
    """A results file holding an id twice (not written by one run) is flagged."""
    write_requests(tmp_path / "in.jsonl", 1)
    (tmp_path / "out.jsonl").write_text(result("req-0") + result("req-0"))
    plan = plan_for(tmp_path)
    assert "holds 1 custom_id(s) more than once" in plan.warnings[0]
    plan.close()


def test_id_digests_keep_flags_and_find_repeats(monkeypatch):
    """IdDigests answers membership with the flag, across sorted chunks, and notes repeats."""
    monkeypatch.setattr(ids_module, "CHUNK", 3)  # several chunks to merge
    ids = IdDigests()
    for name, ok in [("a", True), ("b", False), ("c", True), ("d", False), ("a", False)]:
        ids.add(digest(name), flag=ok)
    ids.freeze()
    assert len(ids) == 5
    assert [ids.get(digest(n)) for n in "abcde"] == [True, False, True, False, None]
    assert digest("b") in ids
    assert digest("zz") not in ids
    assert ids.repeated == {digest("a")}


def test_digests_differ_for_near_ids():
    """Ids differing in one character, or only in case, get different digests."""
    keys = {digest(s) for s in ["req-1", "req-2", "Req-1", "req-1 ", "", "line-1"]}
    assert len(keys) == 6
    assert all(0 <= k < 2**127 for k in keys)
