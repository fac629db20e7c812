"""OpenTelemetry spans of jobs and attempts, the submitter's trace continued, GenAI attributes."""

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor.errors import ConfigError
from conveyor.jobs import App, JobOptions, Jobs, MemoryStore, Worker
from conveyor.jobs import tracing as tracing_module
from conveyor.jobs.tracing import Tracing, carry_trace, default_observers

from .kit import FAST
from .llm_kit import line, llm_app


@pytest.fixture
def spans():
    """A tracer provider of the test's own (never the global one), exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _app() -> App:
    app = App()

    @app.task("check")
    async def check(x):
        await asyncio.sleep(0.1)
        if x == 2:
            msg = "two is refused"
            raise ValueError(msg)
        return x

    return app


def test_the_workers_spans_continue_the_trace_the_job_was_submitted_in(run, spans):
    """A job submitted under a span: its run is that span's child, each attempt the run's."""
    provider, exporter = spans
    tracer = provider.get_tracer("web")
    store, app = MemoryStore(), _app()

    async def main() -> str | None:
        jobs = Jobs(store, app=app)
        with tracer.start_as_current_span("POST /analyse"):
            job = await jobs.submit("check", [1, 2, 3])
        worker = Worker(store, app, options=FAST, observers=[Tracing(tracer_provider=provider)])
        await worker.run(until_idle=True)
        return job.options.traceparent

    traceparent = run(main())
    by_name: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    (web,) = by_name["POST /analyse"]
    (job,) = by_name["job check"]
    items = by_name["item check"]
    trace_id = web.context.trace_id
    assert traceparent is not None
    assert traceparent.startswith(f"00-{trace_id:032x}-{web.context.span_id:016x}-")
    assert job.kind == SpanKind.CONSUMER
    assert (job.context.trace_id, job.parent.span_id) == (trace_id, web.context.span_id)
    assert job.attributes["conveyor.job.task"] == "check"
    assert len(items) == 3
    assert {s.parent.span_id for s in items} == {job.context.span_id}
    assert {s.context.trace_id for s in items} == {trace_id}
    failed = [s for s in items if s.attributes["conveyor.item.index"] == 1]
    assert [s.status.status_code for s in failed] == [StatusCode.ERROR]
    assert failed[0].events[0].name == "exception"
    assert sorted(s.attributes["conveyor.item.index"] for s in items) == [0, 1, 2]


def test_an_llm_attempt_is_a_genai_client_span_with_its_usage(run, spans):
    """``chat gpt-4o-mini``: gen_ai.system, operation, model, and the answer's tokens."""
    provider, exporter = spans
    store, app = MemoryStore(), llm_app()

    async def main() -> None:
        await Jobs(store, app=app).submit("http", [line(0)])
        tracing = Tracing(tracer_provider=provider)
        await Worker(store, app, options=FAST, observers=[tracing]).run(until_idle=True)

    run(main())
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert span.name == "chat gpt-4o-mini"
    a = span.attributes
    assert (a["gen_ai.system"], a["gen_ai.operation.name"]) == ("openai", "chat")
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (100, 10)
    assert a["http.response.status_code"] == 200


def test_a_job_submitted_outside_any_trace_starts_its_own(run, spans):
    """No span current at submit: no traceparent is kept, and the job's run is a root span."""
    provider, exporter = spans
    store, app = MemoryStore(), _app()

    async def main() -> str | None:
        job = await Jobs(store, app=app).submit("check", [1])
        worker = Worker(store, app, options=FAST, observers=[Tracing(tracer_provider=provider)])
        await worker.run(until_idle=True)
        return job.options.traceparent

    assert run(main()) is None
    (job,) = [s for s in exporter.get_finished_spans() if s.name == "job check"]
    assert job.parent is None


def test_without_opentelemetry_nothing_is_traced_nor_carried(monkeypatch):
    """With the API not installed: no default observer, and the options stay as given."""
    monkeypatch.setattr(tracing_module, "tracing_available", lambda: False)
    options = JobOptions(concurrency=3)
    assert default_observers() == []
    assert carry_trace(options) is options


def test_a_traceparent_is_checked_and_stored_only_when_there_is_one():
    """A malformed one is refused (naming the fix); none leaves the stored options as before."""
    with pytest.raises(ConfigError, match="W3C traceparent"):
        JobOptions(traceparent="not-a-trace")
    assert "traceparent" not in JobOptions().to_json()
    good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert JobOptions.from_json(JobOptions(traceparent=good).to_json()).traceparent == good
    # Stored by something else, unreadable: dropped, the job still reads.
    assert JobOptions.from_json('{"traceparent": "00-zz"}').traceparent is None


def test_until_the_application_sets_up_tracing_no_span_is_made():
    """The global provider not set up: the observer gives no context (nothing paid per item)."""
    from opentelemetry import trace

    from conveyor.jobs.model import ClaimedItem, Counts, Job

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    job = Job(id="j", task="t", options=JobOptions(), status="running", counts=Counts(total=1))
    tracing = Tracing()
    assert tracing.running("w", job) is None
    assert tracing.attempt(job, ClaimedItem("j", 0, "1", 0), 1) is None


def test_tracing_set_up_after_the_worker_started_traces_the_next_job_s_run(run, spans, monkeypatch):
    """No provider when the first job's run starts: its attempts make no span; the next run's do."""
    from opentelemetry import trace

    provider, exporter = spans
    store, app = MemoryStore(), App()

    @app.task("first")
    async def first(x):
        # The application sets up tracing while the worker runs this job.
        monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
        return x

    @app.task("second")
    async def second(x):
        return x

    async def main() -> None:
        jobs = Jobs(store, app=app)
        await jobs.submit("first", [1, 2])
        await jobs.submit("second", [1, 2, 3])
        worker = Worker(store, app, options=FAST, observers=[Tracing()])
        await worker.run(until_idle=True)

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    run(main())
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["item second"] * 3 + ["job second"]
