"""The API as a user writes it, checked by mypy --strict (never run)."""

import asyncio

import conveyor


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
