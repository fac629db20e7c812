"""A fake transport: the HTTP seam replaced by a scripted API, for tests on virtual time."""

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from conveyor.http import RawAnswer

Script = Callable[[int, Any, Mapping[str, str]], RawAnswer | BaseException]


def ok(body: Any = None, headers: Mapping[str, str] | None = None) -> RawAnswer:
    """A 200 JSON answer."""
    data = json.dumps({"ok": True} if body is None else body).encode()
    return RawAnswer(200, {"content-type": "application/json", **(headers or {})}, data)


def status(code: int, message: str = "no", headers: Mapping[str, str] | None = None) -> RawAnswer:
    """A non-2xx answer with an OpenAI error object."""
    data = json.dumps({"error": {"message": message}}).encode()
    return RawAnswer(code, {"content-type": "application/json", **(headers or {})}, data)


class FakeAPI:
    """Answers each call after `latency_s` with ``script(call_number, body, headers)``.

    `latency_s` may be a function of the call number. Records the calls' headers and bodies
    unless `record` is False (memory tests).
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        latency_s: float | Callable[[int], float] = 0.01,
        record: bool = True,
    ) -> None:
        self.script: Script = script or (lambda n, body, headers: ok())
        self.latency_s = latency_s
        self.record = record
        self.calls = 0
        self.headers: list[dict[str, str]] = []
        self.bodies: list[Any] = []
        self.in_flight = 0

    async def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> RawAnswer:
        self.calls += 1
        number = self.calls
        parsed = None if body is None else json.loads(body)
        if self.record:
            self.headers.append(dict(headers))
            self.bodies.append(parsed)
        self.in_flight += 1
        try:
            latency = self.latency_s
            await asyncio.sleep(latency if isinstance(latency, float) else latency(number))
        finally:
            self.in_flight -= 1
        answer = self.script(number, parsed, headers)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class DatedTicket:
    """A limiter's ticket that notes when its call was dated sent and answered."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.answered: list[float] = []

    def mark_sent(self, now: float) -> None:
        self.sent.append(now)

    def mark_answered(self, now: float) -> None:
        self.answered.append(now)
