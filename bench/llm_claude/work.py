"""The Claude route's work, limits and ideal: pure, so the tests can check them against the mock.

The work: `N` Messages requests of varied prompt length (a system prompt on one in three),
varied ``max_tokens``, sent to the mock API's ``POST /v1/messages``. Peers cannot send the mock's
``x-mock-*-tokens`` headers, so every contender is charged what the mock counts from the body:

- input: ``ceil(characters of the system prompt and the messages' text / 4)``, whatever shape
  the text travels in (a string or text blocks), so a client that moves the system prompt
  around or wraps text in blocks is charged the same;
- output: the mock's answer names a hash of the prompt (``"Mock answer 0123456789ab."``, 25
  characters, 7 tokens), cut to ``max_tokens``. Every ``max_tokens`` here is at least that, so
  every answer is complete (``stop_reason: "end_turn"``) and costs `OUTPUT_TOKENS`: a client
  that reserves ``max_tokens`` of output overestimates by 2-150x, as on the real API.

The limits (Anthropic's shape: token buckets holding `BURST_S` of each rate, refilled
continuously) make all three dimensions close: requests take 24 s, input about 26 s, output
28 s at their rates, so output binds, input nearly does (and more so with the 529s' retries,
which spend requests and input again), and a limiter that ignores either draws 429s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BURST_S",
    "CONCURRENCY",
    "ITPM",
    "LATENCY_MS",
    "MODEL",
    "OTPM",
    "OUTPUT_TOKENS",
    "OVERLOADED",
    "RPM",
    "N",
    "Request",
    "ideal_s",
    "input_tokens",
    "make_work",
]

N = 720
RPM = 1_800  # 30 requests a second: 24 s of requests
ITPM = 255_000  # 4,250 input tokens a second: 26 s of input
OTPM = 10_800  # 180 output tokens a second: 28 s of output
BURST_S = 1.0
LATENCY_MS = 400.0
OVERLOADED = 0.03
CONCURRENCY = 50
MODEL = "claude-haiku-4-5"

#: What every answer costs in output tokens: the mock's sentence naming a 12-character hash,
#: ``ceil(25 / 4)`` (tests/test_bench_llm_claude.py checks it against the mock's answers).
OUTPUT_TOKENS = math.ceil(len("Mock answer 0123456789ab.") / 4)

_WORDS = (
    *("order", "invoice", "tracking", "parcel", "delivery", "customer", "refund", "account"),
    *("address", "payment", "label", "warehouse", "courier", "status", "delayed", "express"),
    *("return", "exchange", "receipt", "reference", "number", "damaged", "missing", "urgent"),
)
_SYSTEMS = (
    "You are a support analyst. Answer with one short line.",
    (
        "You triage customer tickets for a parcel carrier. Reply with the ticket's category"
        " (delivery, billing, damage, other) and nothing else. Never invent tracking numbers;"
        " if none is given, say so."
    ),
    (
        "You summarise support tickets for a logistics company. Keep the customer's words where"
        " they matter, drop greetings and signatures, name the parcel and the order when the"
        " ticket gives them, and say in a few words what the customer wants done next. Write"
        " plain text, one line, no lists, no markdown, no quotes around the answer."
    ),
)


@dataclass(frozen=True, slots=True)
class Request:
    """One Messages request of the work: what every contender sends for it."""

    custom_id: str
    prompt: str
    max_tokens: int
    system: str | None = None

    def body(self) -> dict[str, Any]:
        """Return the ``/v1/messages`` body (the SDK's ``messages.create`` keyword arguments)."""
        body: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": self.prompt}],
        }
        if self.system is not None:
            body["system"] = self.system
        return body

    def line(self) -> dict[str, Any]:
        """Return the request as a ``conveyor run`` line (the Batch API's line format)."""
        return {"custom_id": self.custom_id, "method": "POST", "url": "/v1/messages",
                "body": self.body()}  # fmt: skip

    def batch_request(self) -> dict[str, Any]:
        """Return the request as a Message Batches API entry (``custom_id``, ``params``)."""
        return {"custom_id": self.custom_id, "params": self.body()}


def make_work(n: int = N, seed: int = 11) -> list[Request]:
    """Return `n` requests: 8-120 words of ticket, a system prompt on one in three."""
    rng = random.Random(seed)
    work = []
    for i in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 120)))
        system = rng.choice(_SYSTEMS) if i % 3 == 0 else None
        work.append(
            Request(
                custom_id=f"msg-{i}",
                prompt=f"Ticket {i}: {words}. Summarise it.",
                max_tokens=rng.choice((16, 64, 256, 1024)),
                system=system,
            )
        )
    return work


def input_tokens(request: Request) -> int:
    """Return the input tokens the mock charges `request`: its text's characters / 4."""
    chars = len(request.prompt) + len(request.system or "")
    return math.ceil(chars / 4)


def ideal_s(work: list[Request]) -> float:
    """Return the issue's ideal: the dimension that binds longest at its rate, then one latency.

    ``max(N / request rate, input / input rate, output / output rate) + latency``: what the
    work needs at the limits' rates, without the first second's burst (a lower bound would
    subtract it) and without the 529s' retries (which spend requests and input again).
    """
    per_s = 60.0
    return (
        max(
            len(work) / (RPM / per_s),
            sum(input_tokens(r) for r in work) / (ITPM / per_s),
            len(work) * OUTPUT_TOKENS / (OTPM / per_s),
        )
        + LATENCY_MS / 1000
    )
