"""LLM batches side by side: Conveyor's runner, its OpenAI-compatible Batch API, and Curator.

Two routes. ``--route openai`` (the default) is described below. ``--route claude`` sends
Messages requests to the mock's Anthropic token buckets (separate input and output limits, 3%
529s, 400 ms latency): Conveyor's three ways (``conveyor run``, ``limit_anthropic``, the Message
Batches API), the ``anthropic`` SDK with a semaphore, and Curator and LiteLLM in the peers'
interpreter (``--peers-python``); it lives in bench/llm_claude/ (its package docstring says more).

The OpenAI route's work: 2,000 chat-completion requests of varied prompt length and
``max_tokens`` (costs 20-190 tokens as the mock counts them: the prompt's characters / 4 plus
``max_tokens``), sent to the local mock API (its own process, 50 ms latency) whose requests and
tokens limits are both binding on a strict 1 s sliding window, with OpenAI's ``x-ratelimit-*``
headers on every answer.

Contenders, one after another against the same mock (its counters reset, and a window's pause,
between them):

1. ``conveyor run``'s runner (`conveyor.http.Batch`, what the command does), with the limits.
2. Conveyor's Batch API: ``conveyor serve`` in-process (ASGI, its worker in this process, the
   SQLite store), its connection to the mock configured with the same limits, driven by the
   official ``openai`` package: upload, create, poll until completed, download the output.
3. The runner again with ``--cache`` on a cache filled by a first pass: it must not call the
   mock at all (the mock's ``/stats`` requests == 0).
4. ``bespokelabs-curator``, when ``--curator-python`` names a Python that has it installed
   (it is not installed with Conveyor: its dependencies conflict with ours), run in that
   interpreter on the same work; else the reason is printed.

Time is what the mock measures, from the first request to the last answer (``active_s`` of
``/stats``): nobody's start-up counts (bench/http.py does the same). The ideal is
`conveyor.policy.ideal.ideal_duration_s` over what was sent.

Run it with ``python bench/llm.py [--n 2000] [--curator-python PATH]``, or the Claude route
with ``python bench/llm.py --route claude [--n 720] [--peers-python PATH]``.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which aiohttp imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse
import asyncio
import importlib.util
import json
import math
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import openai

import conveyor
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, prepare
from conveyor.jobs import App
from conveyor.jobs.worker import WorkerOptions
from conveyor.llm import LlmOptions
from conveyor.mockapi import MockConfig, run_in_process
from conveyor.policy.ideal import ideal_duration_s
from conveyor.service import ServiceConfig, create_app
from conveyor.service.config import Connection

LATENCY_MS = 50.0
RPM = 6_000  # 100 requests per 1 s window
TPM = 540_000  # 9,000 tokens per 1 s window: ~95 requests of the mean cost
WINDOW_S = 1.0
CONCURRENCY = 64
WORDS = [
    *("order", "invoice", "tracking", "parcel", "delivery", "customer", "refund", "account"),
    *("address", "payment", "label", "warehouse", "courier", "status", "delayed", "express"),
    *("return", "exchange", "receipt", "reference", "number"),
]


def make_lines(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        content = f"Email {i}: {words}. Extract the tracking number as JSON."
        lines.append(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": content}],
                    "max_tokens": rng.randint(10, 60),
                },
            }
        )
    return lines


def cost_of(line: dict[str, Any]) -> int:
    body = line["body"]
    chars = sum(len(m["content"]) for m in body["messages"])
    return int(math.ceil(chars / 4) + body["max_tokens"])


async def _stats(base: str, *, reset: bool = False) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        method = session.post if reset else session.get
        async with method(f"{base}/stats/reset" if reset else f"{base}/stats") as r:
            result: dict[str, Any] = await r.json()
            return result


async def fresh(base: str) -> None:
    await _stats(base, reset=True)
    await asyncio.sleep(1.5)  # the previous contender's window passes


async def run_runner(base: str, path: Path, out: Path, *, cache: Path | None) -> dict[str, Any]:
    plan = prepare(BatchFiles(input=path, output=out), Endpoint(base_url=base))
    limits = BatchLimits(
        concurrency=CONCURRENCY, requests_per_minute=RPM, tokens_per_minute=TPM, window_s=WINDOW_S
    )
    retry = conveyor.Retry(attempts=10, base_delay_s=0.05, max_delay_s=1.0, timeout_s=30.0)
    try:
        result = await Batch(plan, limits=limits, retry=retry, llm=LlmOptions(cache=cache)).run()
    finally:
        plan.close()
    return {"ok": result.summary.succeeded, "cache_hits": result.tally.cache_hits}


async def run_batch_api(base: str, path: Path, tmp: Path) -> dict[str, Any]:
    cfg = ServiceConfig(
        store=f"sqlite:///{tmp / 'jobs.db'}",
        keys_file=None,
        files_dir=tmp / "files",
        connections=(
            Connection(
                name="mock",
                base_url=base,
                requests_per_minute=RPM,
                tokens_per_minute=TPM,
                window_s=WINDOW_S,
            ),
        ),
    )
    worker = WorkerOptions(poll_interval_s=0.05, flush_interval_s=0.1)
    asgi = create_app(cfg, app=App(), worker_options=worker)
    async with asgi.router.lifespan_context(asgi):
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=asgi), timeout=60)
        client = openai.AsyncOpenAI(
            api_key="unused", base_url="http://localhost/v1", http_client=http
        )
        file = await client.files.create(file=path, purpose="batch")
        batch = await client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 300
        while batch.status not in {"completed", "failed", "cancelled"}:
            if time.monotonic() > deadline:
                msg = f"the batch did not finish within 300 s: {batch.status}"
                raise TimeoutError(msg)
            await asyncio.sleep(0.2)
            batch = await client.batches.retrieve(batch.id)
        ok = 0
        if batch.output_file_id:
            text = (await client.files.content(batch.output_file_id)).text
            ok = sum(1 for x in text.splitlines() if json.loads(x)["error"] is None)
        await client.close()
    return {"ok": ok, "status": batch.status}


CURATOR_SCRIPT = r"""
import json, sys, os
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
from bespokelabs import curator
base, path, rpm, tpm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(x) for x in open(path)]
prompts = [r["body"]["messages"][0]["content"] for r in rows]
llm = curator.LLM(
    model_name="gpt-4o-mini",
    backend="openai",
    backend_params={"base_url": base + "/v1", "api_key": "unused",
                    "max_requests_per_minute": rpm, "max_tokens_per_minute": tpm,
                    "require_all_responses": False},
)
out = llm(prompts)
rows = getattr(out, "dataset", out)
print("CURATOR_OK", len(rows))
"""


def tiktoken_cache(folder: Path) -> Path:
    """Write the encoding files tiktoken downloads on first use, from bpe-openai's tables.

    Curator counts tokens with tiktoken, which fetches its encodings from the network on first
    use; this machine has none. The files written here are byte-identical to the downloads
    (tiktoken checks their SHA-256 and refuses anything else), so Curator runs unchanged.
    """
    import base64  # noqa: PLC0415 - only with Curator
    import hashlib  # noqa: PLC0415

    import bpe_openai  # type: ignore[import-untyped]  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("cl100k_base", "o200k_base"):
        ranks = bpe_openai.get_encoding(name)._mergeable_ranks  # noqa: SLF001 - its table
        data = "".join(
            f"{base64.b64encode(token).decode()} {rank}\n"
            for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])
        ).encode()
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        (folder / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)  # noqa: S324
    return folder


def run_curator(python: str, base: str, path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    cache = tiktoken_cache(path.parent / "tiktoken")
    proc = subprocess.run(  # noqa: S603 - the interpreter the user named
        [python, "-c", CURATOR_SCRIPT, base, str(path), str(RPM), str(TPM)],
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
        env={
            **os.environ,
            "HOME": str(path.parent / "curator-home"),
            "CURATOR_DISABLE_CACHE": "true",
            "TELEMETRY_ENABLED": "false",  # no network here: its upload only fails
            "TIKTOKEN_CACHE_DIR": str(cache),
        },
    )
    wall = time.perf_counter() - started
    ok = None
    for text_line in proc.stdout.splitlines():
        if text_line.startswith("CURATOR_OK"):
            ok = int(text_line.split()[1])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"ok": ok, "returncode": proc.returncode, "wall_s": wall, "tail": tail}


def run_claude_route(n: int | None, peers_python: str | None) -> int:
    """Run the Claude route: bench/llm_claude, imported by its location.

    This folder is off sys.path (above), so the package is registered here under its name; its
    modules import one another relatively.
    """
    if "llm_claude" not in sys.modules:
        init = Path(_HERE) / "llm_claude" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "llm_claude", init, submodule_search_locations=[str(init.parent)]
        )
        assert spec is not None
        assert spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["llm_claude"] = package
        spec.loader.exec_module(package)
    from llm_claude import run  # noqa: PLC0415 - registered just above

    return run.main(n=n, peers_python=peers_python)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--route", choices=("openai", "claude"), default="openai")
    parser.add_argument("--n", type=int, help="requests (default: 2,000 openai, 720 claude)")
    parser.add_argument("--curator-python", help="a Python with bespokelabs-curator installed")
    parser.add_argument(
        "--peers-python", help="a Python with bespokelabs-curator and litellm installed"
    )
    args = parser.parse_args()
    if args.route == "claude":
        return run_claude_route(args.n, args.peers_python)
    args.n = 2_000 if args.n is None else args.n
    args.curator_python = args.curator_python or args.peers_python
    lines = make_lines(args.n)
    tokens = sum(cost_of(x) for x in lines)
    config = MockConfig(latency_ms=LATENCY_MS, rpm=RPM, tpm=TPM, window_s=WINDOW_S, seed=1)
    checks: list[tuple[str, bool]] = []
    rows: list[tuple[str, int | None, float, int, int]] = []
    print(
        f"{args.n:,} chat requests, {tokens:,} tokens (mean {tokens / args.n:.1f}); mock:"
        f" {RPM:,} rpm and {TPM:,} tpm over a strict {WINDOW_S:g} s window,"
        f" {LATENCY_MS:g} ms latency; concurrency {CONCURRENCY}"
    )
    with tempfile.TemporaryDirectory() as tmp_name, run_in_process(config) as base:
        tmp = Path(tmp_name)
        path = tmp / "requests.jsonl"
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))

        def measured(name: str, coro: Any) -> dict[str, Any]:
            asyncio.run(fresh(base))
            result: dict[str, Any] = asyncio.run(coro)
            stats = asyncio.run(_stats(base))
            result["stats"] = stats
            sent = stats["requests"]
            ideal = ideal_duration_s(
                requests=sent,
                tokens=stats["tokens_admitted"],
                concurrency=CONCURRENCY,
                latency_s=LATENCY_MS / 1000,
                requests_per_minute=RPM,
                tokens_per_minute=TPM,
                window_s=WINDOW_S,
            )
            result["ideal"] = ideal
            rows.append((name, result.get("ok"), stats["active_s"], stats["rate_limited"], sent))
            return result

        runner = measured(
            "conveyor run", run_runner(base, path, tmp / "out1.jsonl", cache=tmp / "cache.db")
        )
        api = measured("conveyor Batch API", run_batch_api(base, path, tmp))
        cached = measured(
            "conveyor run --cache (2nd)",
            run_runner(base, path, tmp / "out2.jsonl", cache=tmp / "cache.db"),
        )
        curator: dict[str, Any] | None = None
        if args.curator_python:
            asyncio.run(fresh(base))
            curator = run_curator(args.curator_python, base, path)
            stats = asyncio.run(_stats(base))
            curator["stats"] = stats
            rows.append(
                ("bespokelabs-curator", curator["ok"], stats["active_s"], stats["rate_limited"],
                 stats["requests"])
            )  # fmt: skip
    ideal = runner["ideal"]
    print(f"\nideal (2,000 requests, no retries): {ideal:.2f} s")
    print(f"{'contender':<28} {'ok':>6} {'seconds':>8} {'of ideal':>9} {'429s':>6} {'sent':>6}")
    for name, ok, seconds, limited, sent in rows:
        share = ideal / seconds if seconds else float("nan")
        shown = "-" if ok is None else str(ok)
        print(f"{name:<28} {shown:>6} {seconds:>8.2f} {share:>9.3f} {limited:>6} {sent:>6}")
    for name, result in (("runner", runner), ("Batch API", api)):
        stats = result["stats"]
        share = result["ideal"] / stats["active_s"]
        checks.append(
            (f"{name}: 429s = {stats['rate_limited']} (target 0)", stats["rate_limited"] == 0)
        )
        checks.append((f"{name}: {share:.3f} of the ideal time (target >= 0.97)", share >= 0.97))
        checks.append((f"{name}: {result['ok']} of {args.n} succeeded", result["ok"] == args.n))
    checks.append(
        (
            (
                f"cache: the second run made {cached['stats']['requests']} upstream calls"
                f" (target 0), {cached['cache_hits']} answers from the cache"
            ),
            cached["stats"]["requests"] == 0 and cached["cache_hits"] == args.n,
        )
    )
    if curator is None:
        print("\nbespokelabs-curator: not run (pass --curator-python PATH)")
    else:
        print(
            f"\nbespokelabs-curator: exit {curator['returncode']}, wall {curator['wall_s']:.1f} s"
        )
        for text_line in curator["tail"]:
            print(f"  {text_line[:200]}")
    print()
    for text, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}: {text}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
