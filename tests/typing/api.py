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
