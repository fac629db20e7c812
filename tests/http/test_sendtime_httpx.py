"""SDKs built on httpx: a call through limit_openai is dated when its request leaves."""

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from conveyor.engine.context import current_slots
from conveyor.engine.sendtime import _httpx_request, date_httpx_sends

from .fakes import DatedTicket


def test_the_hook_is_installed_once_and_keeps_the_client_s_own():
    async def mine(request: httpx.Request) -> None:
        del request

    client = httpx.AsyncClient(event_hooks={"request": [mine]})
    assert date_httpx_sends(client) is True
    assert date_httpx_sends(client) is True
    assert client.event_hooks["request"] == [mine, _httpx_request]
    assert date_httpx_sends(object()) is False  # not an httpx client: left alone


def test_only_requests_made_while_a_call_holds_tickets_are_traced():
    async def main() -> tuple[dict[str, object], dict[str, object], DatedTicket]:
        outside = httpx.Request("POST", "http://127.0.0.1/v1")
        await _httpx_request(outside)
        ticket = DatedTicket()
        token = current_slots.set((ticket,))  # type: ignore[arg-type]
        try:
            inside = httpx.Request("POST", "http://127.0.0.1/v1")
            await _httpx_request(inside)
        finally:
            current_slots.reset(token)
        trace = inside.extensions["trace"]
        await trace("connection.connect_tcp.started", {})
        await trace("http11.send_request_headers.started", {})
        await trace("http11.receive_response_headers.complete", {})
        return outside.extensions, inside.extensions, ticket

    outside, inside, ticket = asyncio.run(main())
    assert "trace" not in outside
    assert "trace" in inside
    assert len(ticket.sent) == 1  # at the headers, not at the connection
    assert len(ticket.answered) == 1
    assert ticket.answered[0] >= ticket.sent[0]


@pytest.mark.parametrize("hooks", [None, SimpleNamespace()])
def test_a_client_without_hooks_is_left_alone(hooks):
    assert date_httpx_sends(SimpleNamespace(event_hooks=hooks)) is False
