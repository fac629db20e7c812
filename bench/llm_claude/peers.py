"""Curator and LiteLLM on the Claude route's work, each in the peers' own interpreter.

Their dependencies conflict with Conveyor's, so they live in another virtualenv (``python -m venv
/work/peers-venv && /work/peers-venv/bin/pip install bespokelabs-curator litellm``) and run
there as a script: `CURATOR_SCRIPT` or `LITELLM_SCRIPT`, after `PRELUDE`. Each reads the work
(JSONL of `Request` fields), builds its client, then resets the mock API (counters and
buckets, then 1.5 s: nobody's start-up is measured, and Curator's start-up probe call is not
counted) and sends the work, printing ``PEER_OK n`` (the answers it got) at the end.

How each is pointed at the mock, with its own limits (read from their source):

- **Curator** (``backend="anthropic"``, its native Messages client over aiohttp):
  ``backend_params={"base_url": mock + "/v1", ...}`` (it posts to ``base_url + "/messages"``),
  ``max_requests_per_minute``, ``max_input_tokens_per_minute`` and
  ``max_output_tokens_per_minute`` (its separate input/output strategy: a bucket of a minute
  of each, starting empty; input estimated with tiktoken's cl100k plus 50, output from the
  moving average of answers), ``max_concurrent_requests``. Per-request ``max_tokens`` and
  ``system`` travel in a ``generation_params`` column (a JSON string per row): its Anthropic
  backend copies them into the body; a ``system`` role message would be sent as a message,
  which the Messages API refuses. Its constructor probes the API once with the ``anthropic``
  SDK (``base_url`` minus ``/v1/messages``) to read the limit headers; the manual limits win.
- **LiteLLM** (``litellm.Router``, the part that knows limits): one deployment
  ``anthropic/<model>`` with ``api_base`` = the mock (it appends ``/v1/messages``), ``rpm``,
  ``tpm`` (one budget: it has no separate input and output limits), ``max_parallel_requests``;
  ``routing_strategy="usage-based-routing-v2"`` enforces rpm and tpm per calendar minute;
  ``num_retries`` retries 429s (honouring ``retry-after``) and 529s. OpenAI-style ``system``
  messages become the Messages API's ``system``.

Nothing reaches past 127.0.0.1: `PRELUDE` installs an audit hook that refuses any connection or
name lookup elsewhere and lists them (``PEER_BLOCKED``) at exit; the run reports them. What
would phone home is turned off or served locally: LiteLLM's model cost map
(``LITELLM_LOCAL_MODEL_COST_MAP=True``: its bundled copy), tiktoken's encodings
(``TIKTOKEN_CACHE_DIR``: the copies LiteLLM ships), Curator's telemetry
(``TELEMETRY_ENABLED=false``) and hosted viewer (``CURATOR_VIEWER`` unset), Hugging Face
(``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1``), proxies (unset, ``NO_PROXY``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .work import CONCURRENCY, ITPM, MODEL, OTPM, RPM

if TYPE_CHECKING:
    from pathlib import Path

    from .work import Request

__all__ = ["CURATOR_SCRIPT", "LITELLM_SCRIPT", "PRELUDE", "PeerRun", "run_peer", "write_work"]

PRELUDE = r"""
import atexit, json, os, socket, sys, time, urllib.request

_LOCAL = {"127.0.0.1", "::1", "localhost"}
_BLOCKED = []

def _guard(event, args):
    # Refuse (and list) any connection or name lookup beyond this machine's loopback.
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address[0] not in _LOCAL:
            _BLOCKED.append(f"connect {address[0]}:{address[1]}")
            raise ConnectionRefusedError(f"bench: no network but 127.0.0.1 ({address[0]})")
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if host is not None and host not in _LOCAL:
            _BLOCKED.append(f"resolve {host}")
            raise socket.gaierror(f"bench: no network but 127.0.0.1 ({host})")

sys.addaudithook(_guard)
atexit.register(lambda: [print("PEER_BLOCKED", b, flush=True) for b in sorted(set(_BLOCKED))])

import importlib.util
_litellm = importlib.util.find_spec("litellm")
if _litellm is not None and _litellm.origin:  # tiktoken's encodings, as LiteLLM ships them
    os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(
        os.path.dirname(_litellm.origin), "litellm_core_utils", "tokenizers")

base, path = sys.argv[1], sys.argv[2]
rpm, itpm, otpm, concurrency = (int(x) for x in sys.argv[3:7])
model = sys.argv[7]
rows = [json.loads(line) for line in open(path)]

def fresh():
    # Reset the mock (counters, buckets) after start-up, then let a window pass.
    request = urllib.request.Request(base + "/stats/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    time.sleep(1.5)
"""

CURATOR_SCRIPT = r"""
from bespokelabs import curator

class Claude(curator.LLM):
    def prompt(self, row):
        return row["prompt"]

def params(row):
    extra = {"system": row["system"]} if row["system"] else {}
    return json.dumps({"max_tokens": row["max_tokens"], **extra})

dataset = [{"prompt": r["prompt"], "generation_params": params(r)} for r in rows]
llm = Claude(
    model_name=model,
    backend="anthropic",
    generation_params={"max_tokens": max(r["max_tokens"] for r in rows)},
    backend_params={
        "base_url": base + "/v1",
        "api_key": "unused",
        "max_requests_per_minute": rpm,
        "max_input_tokens_per_minute": itpm,
        "max_output_tokens_per_minute": otpm,
        "max_concurrent_requests": concurrency,
        "require_all_responses": False,
    },
)
fresh()
out = llm(dataset)
answered = [r for r in out.dataset if r.get("response") is not None]
print("PEER_OK", len(answered), flush=True)
"""

LITELLM_SCRIPT = r"""
import asyncio
import litellm
from litellm import Router

litellm.suppress_debug_info = True
router = Router(
    model_list=[{
        "model_name": "claude",
        "litellm_params": {
            "model": "anthropic/" + model,
            "api_base": base,
            "api_key": "unused",
            "rpm": rpm,
            "tpm": itpm + otpm,
            "max_parallel_requests": concurrency,
        },
    }],
    routing_strategy="usage-based-routing-v2",
    num_retries=10,
)

async def one(row):
    system = [{"role": "system", "content": row["system"]}] if row["system"] else []
    messages = [*system, {"role": "user", "content": row["prompt"]}]
    await router.acompletion(model="claude", messages=messages, max_tokens=row["max_tokens"])

async def main():
    results = await asyncio.gather(*(one(r) for r in rows), return_exceptions=True)
    errors = {}
    for result in results:
        if isinstance(result, BaseException):
            name = type(result).__name__
            errors[name] = errors.get(name, 0) + 1
    for name, count in sorted(errors.items()):
        print("PEER_ERRORS", name, count, flush=True)
    print("PEER_OK", sum(1 for r in results if not isinstance(r, BaseException)), flush=True)

fresh()
asyncio.run(main())
"""


@dataclass(frozen=True, kw_only=True)
class PeerRun:
    """What a peer's run printed and how it ended.

    Attributes:
        ok: the answers it reported (``PEER_OK``), None if it never said.
        returncode: its exit status (None: stopped at its deadline).
        wall_s: its whole run, start-up included.
        blocked: connections and lookups beyond 127.0.0.1 it tried (refused).
        errors: its final errors by kind (``PEER_ERRORS``), where it reports them.
        tail: the last lines of its output, to show why it failed.
    """

    ok: int | None
    returncode: int | None
    wall_s: float
    blocked: list[str]
    errors: list[str]
    tail: list[str]


def write_work(work: list[Request], path: Path) -> Path:
    """Write the work as the peer scripts read it: one JSON object of a request's fields a line."""
    fields = ("custom_id", "prompt", "max_tokens", "system")
    path.write_text("".join(json.dumps({f: getattr(r, f) for f in fields}) + "\n" for r in work))
    return path


def _env(home: Path) -> dict[str, str]:
    """Return the peers' environment: no proxy, no key of ours, nothing that phones home."""
    dropped = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in dropped and "KEY" not in k and "TOKEN" not in k
    }
    return env | {
        "HOME": str(home),
        "NO_PROXY": "127.0.0.1,localhost",
        "ANTHROPIC_API_KEY": "unused",  # the mock takes any key; Curator's probe wants one
        "CURATOR_DISABLE_CACHE": "true",
        "CURATOR_CACHE_DIR": str(home / "curator"),
        "CURATOR_DISABLE_RICH_DISPLAY": "1",
        "TELEMETRY_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
    }


def run_peer(
    python: str, script: str, *, base: str, work_path: Path, home: Path, timeout_s: float
) -> PeerRun:
    """Run a peer's `script` in `python` against the mock at `base`; return what it reported."""
    home.mkdir(parents=True, exist_ok=True)
    args = [str(x) for x in (base, work_path, RPM, ITPM, OTPM, CONCURRENCY, MODEL)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(  # noqa: S603 - the interpreter the user named
            [python, "-c", PRELUDE + script, *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=home,  # not bench/: its http.py would shadow the standard library's
            env=_env(home),
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        returncode: int | None = None
    else:
        out, err, returncode = proc.stdout, proc.stderr, proc.returncode
    wall = time.perf_counter() - started
    ok = None
    blocked, errors = [], []
    for line in out.splitlines():
        if line.startswith("PEER_OK "):
            ok = int(line.split()[1])
        elif line.startswith("PEER_BLOCKED "):
            blocked.append(line.removeprefix("PEER_BLOCKED "))
        elif line.startswith("PEER_ERRORS "):
            errors.append(line.removeprefix("PEER_ERRORS "))
    tail = [x for x in (err or out).strip().splitlines() if x.strip()][-3:]
    return PeerRun(
        ok=ok, returncode=returncode, wall_s=wall, blocked=blocked, errors=errors, tail=tail
    )
