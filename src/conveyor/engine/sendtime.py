"""Date each admission when its request's headers go out, not when the limiter granted it.

The engine dates an attempt's admission when the attempt starts (`Slot.mark_sent`). An HTTP
request can leave later than that: when the pool has no idle connection (one was dropped, or
the run is young), it first opens one. Against a strict window that matters: a request sent
12 ms after its date, followed one window later by a request sent on time, puts both inside
one window of the server's, which answers 429 (seen once in four demo runs, with a 10 ms
margin). aiohttp's trace signal for "request headers sent" runs in the request's own task, so
it reaches the attempt's slots (`conveyor.engine.context.current_slots`) and re-dates them.

The same trace notes when the answer's headers arrive (`Slot.mark_answered`, on aiohttp's
"request end" signal): the limiter dates a call answered late by its answer, and the moment
the attempt ends comes later by whatever the task did with the answer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .context import current_slots

if TYPE_CHECKING:
    from collections.abc import Sequence

    import aiohttp

    from ..limits.protocol import Ticket

__all__ = ["date_httpx_sends", "send_time_trace"]


def _date(tickets: Sequence[Ticket], *, answered: bool = False) -> None:
    """Date `tickets` at the loop's time now: as sent, or (`answered`) as answered."""
    now = asyncio.get_running_loop().time()
    for ticket in tickets:
        if answered:
            ticket.mark_answered(now)
        else:
            ticket.mark_sent(now)


async def _headers_sent(session: Any, context: Any, params: Any) -> None:
    del session, context, params
    if slots := current_slots.get():
        _date(slots)


async def _answered(session: Any, context: Any, params: Any) -> None:
    del session, context, params
    if slots := current_slots.get():
        _date(slots, answered=True)


def send_time_trace() -> aiohttp.TraceConfig:
    """A trace config that dates the running attempt's slots as its request leaves.

    It also notes when the answer's headers arrive (the limiter dates late calls by them).
    """
    import aiohttp  # noqa: PLC0415 - only the batch runner needs it

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_headers_sent)
    trace.on_request_end.append(_answered)
    return trace


class _HttpxTrace:
    """httpcore's ``trace`` extension for one request: dates its tickets as the request leaves."""

    __slots__ = ("_tickets",)

    def __init__(self, tickets: Sequence[Ticket]) -> None:
        self._tickets = tickets

    async def __call__(self, name: str, info: object) -> None:
        del info
        if name.endswith("send_request_headers.started"):
            _date(self._tickets)
        elif name.endswith("receive_response_headers.complete"):
            _date(self._tickets, answered=True)


async def _httpx_request(request: Any) -> None:
    tickets = current_slots.get()
    if tickets:
        request.extensions["trace"] = _HttpxTrace(tickets)


def date_httpx_sends(http_client: object) -> bool:
    """Make an ``httpx.AsyncClient`` date the running call's tickets as its request leaves.

    SDKs built on httpx (``openai``, ``anthropic``) open a connection, or finish lazy set-up
    work, after the limiter granted the call: against a strict window, a call that leaves
    tens of milliseconds late meets the next window's calls (the first calls through a new
    client were seen 20 ms late, drawing a 429 at the next window). A request hook adds
    httpcore's ``trace`` extension to requests made while an attempt holds tickets
    (`conveyor.engine.context.current_slots`); other requests are not touched. Installed
    once per client; returns whether the client could take it.
    """
    hooks = getattr(http_client, "event_hooks", None)
    if not isinstance(hooks, dict):
        return False
    before = list(hooks.get("request", ()))
    if _httpx_request not in before:
        try:
            http_client.event_hooks = {**hooks, "request": [*before, _httpx_request]}  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            return False
    return True
