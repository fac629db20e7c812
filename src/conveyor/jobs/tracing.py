"""OpenTelemetry spans of a worker's work, and the trace context carried from submit to it.

Optional: with ``opentelemetry-api`` installed (``pip install 'conveyor[otel]'``), workers
make spans through the tracer provider the application set up (none set up: the API's no-op
spans); without it, nothing here runs and nothing is imported.

- `Jobs.submit` (and the service, from a request's ``traceparent`` header) keeps the W3C
  trace context current at submit in the job's options (`JobOptions.traceparent`, stored with
  them as JSON: no schema change), so the workers' spans continue the submitter's trace.
- A worker's run of a job's items is a span ``job <task>`` (kind consumer), a child of that
  context; each attempt at an item is a span within it (``item <task>``), current while the
  task runs, so the task's own spans (an instrumented HTTP client) nest under it.
- An attempt whose item is an LLM request (a request line whose body names a ``model``, to a
  known path) is a client span named as the GenAI semantic conventions say (``chat gpt-4o``),
  with ``gen_ai.system``, ``gen_ai.operation.name``, ``gen_ai.request.model`` and, from the
  answer's ``usage``, ``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens``.

An attempt that raised ends its span with the error recorded and the status ``ERROR``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._version import __version__
from .observe import JobObserver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from opentelemetry.trace import Span, TracerProvider

    from .model import ClaimedItem, Job, JobOptions

__all__ = ["Tracing", "carry_trace", "default_observers", "llm_call", "tracing_available"]

#: LLM request paths (their endings) -> the GenAI operation they are.
_OPERATIONS = (
    ("/chat/completions", "chat"),
    ("/messages", "chat"),
    ("/responses", "chat"),
    ("/completions", "text_completion"),
    ("/embeddings", "embeddings"),
)


@functools.cache
def tracing_available() -> bool:
    """Whether ``opentelemetry-api`` is installed (looked up once, imported only when used)."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except ModuleNotFoundError:  # no opentelemetry package at all
        return False


def default_observers() -> list[JobObserver]:
    """What a worker observes with when none are given: spans, if OpenTelemetry is there."""
    return [Tracing()] if tracing_available() else []


def carry_trace(options: JobOptions) -> JobOptions:
    """`options` with the trace context current now, if any and none is set already."""
    if options.traceparent is not None or not tracing_available():
        return options
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415 - optional
        TraceContextTextMapPropagator,
    )

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    traceparent = carrier.get("traceparent")
    return options if traceparent is None else replace(options, traceparent=traceparent)


def llm_call(item_input: Any) -> tuple[str, str, str] | None:
    """``(gen_ai.system, gen_ai.operation.name, model)`` of an LLM request line, or None.

    >>> llm_call({"url": "/v1/chat/completions", "body": {"model": "gpt-4o"}})
    ('openai', 'chat', 'gpt-4o')
    >>> llm_call({"url": "/v1/messages", "body": {"model": "claude-sonnet-4-5"}})
    ('anthropic', 'chat', 'claude-sonnet-4-5')
    >>> llm_call({"url": "/v1/things", "body": {"model": "m"}}) is None
    True
    """
    if not isinstance(item_input, dict):
        return None
    url, body = item_input.get("url"), item_input.get("body")
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(url, str) or not isinstance(model, str):
        return None
    path = url.split("?", 1)[0].rstrip("/")
    for ending, operation in _OPERATIONS:
        if path.endswith(ending):
            system = "anthropic" if ending == "/messages" else "openai"
            return system, operation, model
    return None


class Tracing(JobObserver):
    """Spans of a worker's jobs and attempts (see the module docstring).

    Args:
        tracer_provider: where the spans go; ``None``: the application's global provider,
            once it set one up (until then, no span is made: that costs nothing per item).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace  # noqa: PLC0415 - optional

        self._trace = trace
        self._own = tracer_provider is not None
        self._tracer = trace.get_tracer("conveyor", __version__, tracer_provider=tracer_provider)
        self._set_up = self._own

    def _configured(self) -> bool:
        """Whether spans go anywhere: a provider given, or one set up by the application.

        The global provider is set once and for good, so once set it is remembered; until then
        it is looked up (that reads the environment), which the worker does once per job run
        (`live`): a run begun before the application set up tracing makes no spans.
        """
        if not self._set_up:
            provider = self._trace.get_tracer_provider()
            self._set_up = not isinstance(provider, self._trace.ProxyTracerProvider)
        return self._set_up

    def live(self) -> bool:
        """Whether spans go anywhere now (asked once per job run)."""
        return self._configured()

    def running(self, worker_id: str, job: Job) -> contextlib.AbstractContextManager[Any] | None:
        """A ``job <task>`` span, the child of the trace the job was submitted in."""
        if not self._configured():
            return None
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415 - optional
            TraceContextTextMapPropagator,
        )

        parent = None
        if job.options.traceparent is not None:
            carrier = {"traceparent": job.options.traceparent}
            parent = TraceContextTextMapPropagator().extract(carrier)
        attributes = {
            "conveyor.job.id": job.id,
            "conveyor.job.task": job.task,
            "conveyor.worker.id": worker_id,
        }
        return self._tracer.start_as_current_span(
            f"job {job.task}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
        )

    def attempt(
        self, job: Job, item: ClaimedItem, item_input: Any
    ) -> contextlib.AbstractContextManager[Callable[[Any], None]] | None:
        """A span per attempt, current while the task runs; GenAI attributes for LLM calls."""
        if not self._configured():
            return None
        attributes: dict[str, str | int] = {
            "conveyor.job.id": job.id,
            "conveyor.job.task": job.task,
            "conveyor.item.index": item.index,
            "conveyor.item.attempts_before": item.attempts,
        }
        llm = llm_call(item_input)
        name, kind = f"item {job.task}", self._trace.SpanKind.INTERNAL
        if llm is not None:
            system, operation, model = llm
            name, kind = f"{operation} {model}", self._trace.SpanKind.CLIENT
            attributes["gen_ai.system"] = system
            attributes["gen_ai.operation.name"] = operation
            attributes["gen_ai.request.model"] = model
        span = self._tracer.start_as_current_span(name, kind=kind, attributes=attributes)
        return _attempt(span, llm=llm is not None)


@contextlib.contextmanager
def _attempt(
    span_context: contextlib.AbstractContextManager[Span], *, llm: bool
) -> Iterator[Callable[[Any], None]]:
    """The attempt's span, current meanwhile; gives what notes the answer on it."""
    with span_context as span:
        yield lambda value: _answered(span, value, llm=llm)


def _answered(span: Span, value: Any, *, llm: bool) -> None:
    """Note an attempt's answer on its span: the HTTP status, and an LLM answer's usage."""
    if not isinstance(value, dict) or not span.is_recording():
        return
    status = value.get("status_code")
    if isinstance(status, int):
        span.set_attribute("http.response.status_code", status)
    if not llm:
        return
    from ..llm.pricing import usage_of  # noqa: PLC0415 - only for LLM answers, traced

    body = value.get("body")
    usage = usage_of(body)
    if usage is None:
        return
    # The conventions count every prompt token as input (those read from or written to a
    # prompt cache too).
    span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", usage.tokens_out)
    if usage.model is not None:
        span.set_attribute("gen_ai.response.model", usage.model)
