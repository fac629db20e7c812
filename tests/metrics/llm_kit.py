"""An LLM job on virtual time: the http task answered by a scripted API (no network)."""

from typing import Any

from conveyor.http import RawAnswer
from conveyor.jobs import App

from ..http.fakes import FakeAPI, ok, status

#: The http task's only address: nothing is sent there (the transport is scripted).
BASE_URL = "http://127.0.0.1:9"


def line(i: int, model: str = "gpt-4o-mini", url: str = "/v1/chat/completions") -> dict[str, Any]:
    """A request line of the OpenAI Batch API's shape."""
    body = {"model": model, "messages": [{"role": "user", "content": f"q {i}"}], "max_tokens": 20}
    return {"custom_id": f"r{i}", "method": "POST", "url": url, "body": body}


def answer(number: int, body: Any, headers: Any) -> RawAnswer:
    """A chat completion of 100 prompt and 10 completion tokens; a 400 for the model "bad"."""
    del number, headers
    if body["model"] == "bad":
        return status(400, "no such model")
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    return ok({"model": body["model"], "choices": [], "usage": usage})


def llm_app() -> App:
    """An app whose ``http`` task is answered by `answer` after 0.1 s."""
    app = App()
    app.add_http_task(base_url=BASE_URL, transport=FakeAPI(answer, latency_s=0.1))
    return app
