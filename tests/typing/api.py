"""The API as a user writes it, checked by mypy --strict (never run)."""

import asyncio
from typing import Protocol

import anthropic
import openai

import conveyor
from conveyor.llm import limit_anthropic, limit_openai


async def release(message_id: int) -> str:
    await asyncio.sleep(0)
    return f"released {message_id}"


def delete_record(record_id: str) -> bool:
    return bool(record_id)


async def main() -> None:
    report = await conveyor.map(
        release, [1, 2, 3], concurrency=50, retry=conveyor.Retry(attempts=5)
    )
    failed: int = report.summary.failed
    errors: list[BaseException | None] = [o.error for o in report.failed]
    values: list[str] = report.values
    async for outcome in conveyor.stream(release, range(10), concurrency=20):
        index: int = outcome.index
        if outcome.ok:
            text: str | None = outcome.value
    print(failed, errors, values, index, text)


class SlowDown(Exception):
    """A user's SDK's throttle."""


def monthly_quota(exc: BaseException) -> conveyor.Verdict | None:
    if "monthly quota" in str(exc):
        return conveyor.Verdict("quota", reason=str(exc))
    return None


def own_rules() -> conveyor.Retry:
    classifier = conveyor.Classifier(
        rules=(conveyor.rule_for(SlowDown, "rate_limited", retry_after_s=2.0), monthly_quota)
    )
    verdict: conveyor.Verdict = classifier.classify(SlowDown(), now_wall_s=0.0)
    retryable: bool = verdict.retryable
    wait: float | None = verdict.retry_after_s
    print(retryable, wait)
    return conveyor.Retry(attempts=5, classifier=classifier)


def sync_main() -> None:
    report = conveyor.run_sync(delete_record, ["a", "b"], concurrency=10)
    deleted: list[bool] = report.values
    print(deleted, report.summary.to_dict())


app = conveyor.App(limiters=[conveyor.Limiter("openai", requests_per_minute=500)])


@app.task("analyze", limiters=["openai"])
async def analyze(email: dict[str, str], ctx: conveyor.TaskContext) -> dict[str, int]:
    ctx.progress(50, "Matching APIs...")
    key: str = ctx.idempotency_key
    return {"length": len(email["body"]) + len(key)}


async def jobs_main() -> None:
    async with conveyor.Jobs("sqlite:///jobs.db", app=app) as jobs:
        job: conveyor.Job = await jobs.submit("analyze", [{"body": "hi"}], concurrency=20)
        async for snapshot in jobs.watch(job.id):
            progress: float = snapshot.progress
            print(progress, snapshot.step, snapshot.counts.failed)
        await conveyor.Worker(jobs.store, app).run(until_idle=True)
        done = await jobs.wait(job.id, timeout_s=60)
        async for item in jobs.results(done.id, state="failed"):
            print(item.index, item.error_type, item.error_message)
        again: int = await jobs.retry_failed(job.id)
        cancelled: conveyor.Job = await jobs.cancel(job.id)
        print(again, cancelled.status, conveyor.JobOptions(concurrency=5, timeout_s=30.0))


# The handler of docs/howto/run-llm-batches.md: an LLM call beside a mail API and a pool.
class MailAPI(Protocol):
    async def get(self, message_id: str) -> str: ...


class Pool(Protocol):
    async def execute(self, query: str, *args: object) -> str: ...


async def triage_main(mail_api: MailAPI, pool: Pool, message_ids: list[str]) -> None:
    mail = conveyor.Limiter("mail", requests_per_second=10)
    llm = conveyor.Limiter("openai", requests_per_minute=500, tokens_per_minute=200_000, window_s=1)
    client = limit_openai(openai.AsyncOpenAI(), limiters=[llm])
    db = conveyor.Limiter("db", concurrency=20)

    async def triage(message_id: str) -> dict[str, str | None]:
        async with mail.acquire():
            body = await mail_api.get(message_id)
        answer = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Classify: {body}"}],
            max_tokens=20,
        )
        label = answer.choices[0].message.content
        async with db.acquire():
            await pool.execute("UPDATE messages SET label = $1 WHERE id = $2", label, message_id)
        return {"id": message_id, "label": label}

    report = await conveyor.map(triage, message_ids, concurrency=50)
    print(report.summary.succeeded, [o.error for o in report.failed])
    async for outcome in conveyor.stream(triage, message_ids, concurrency=50):
        if outcome.ok:
            print(outcome.value)


async def summarise_main(tickets: list[str]) -> None:
    haiku = conveyor.Limiter(
        "claude-haiku",
        requests_per_minute=50,
        input_tokens_per_minute=50_000,
        output_tokens_per_minute=10_000,
        bucket_s=1.2,
    )
    claude = limit_anthropic(anthropic.AsyncAnthropic(), limiters=[haiku])

    async def summarise(ticket: str) -> str:
        answer = await claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=256,
            system="Summarise the ticket in one sentence.",
            messages=[{"role": "user", "content": ticket}],
        )
        block = answer.content[0]
        return block.text if block.type == "text" else ""

    async def summarise_streamed(ticket: str) -> str:
        async with claude.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=256,
            messages=[{"role": "user", "content": ticket}],
        ) as stream:
            return await stream.get_final_text()

    report = await conveyor.map(summarise, tickets, concurrency=20)
    print(report.summary.succeeded, await summarise_streamed(tickets[0]))
