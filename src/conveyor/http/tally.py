"""What a batch has done so far, and the rates it runs at: counters in, a snapshot out. Pure.

`BatchTally` is updated as the run goes (by the engine's events and the HTTP task);
`RateMeter` turns samples of it into per-minute rates over the last few seconds; `snapshot`
freezes both into a `Progress` that the display formats. Nothing here reads a clock: `now` is
always passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["BatchTally", "Progress", "RateMeter", "snapshot"]


@dataclass
class BatchTally:
    """Live counts of one batch run.

    Attributes:
        total: requests this run has to settle (the input's, minus those already in the
            results); ``None`` until known.
        succeeded, failed: settled and written this run (failed includes invalid lines).
        invalid: lines that could not be sent (written as failed).
        cancelled: stopped in flight by an interrupt (not written: they re-run on resume).
        retrying: waiting to be retried now.
        sent, tokens_sent: HTTP attempts made, and their estimated tokens (with a token
            limit, an answer's ``usage`` replaces its estimate).
        input_sent: the prompt tokens of the attempts made: estimated when sent, replaced by
            the answer's ``usage`` when it comes (Anthropic: input plus cache writes).
        rate_limited: HTTP 429 answers seen.
        skipped: requests already in the results file when the run started.
        tokens_in, tokens_out: the prompt and completion tokens the answers' ``usage`` gave.
        cost_usd: what those tokens cost (`conveyor.llm.PriceTable`); unpriced: answers
            whose model has no price (not in `cost_usd`).
        cache_hits: requests answered from the response cache (not sent).
        not_started: requests left pending when the run stopped admitting (budget, quota).
    """

    total: int | None = None
    succeeded: int = 0
    failed: int = 0
    invalid: int = 0
    cancelled: int = 0
    retrying: int = 0
    sent: int = 0
    tokens_sent: float = 0.0
    input_sent: float = 0.0
    rate_limited: int = 0
    skipped: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    cache_hits: int = 0
    not_started: int = 0

    @property
    def projected_cost_usd(self) -> float | None:
        """The cost the whole run is heading for: the mean cost so far times the total.

        None until something settled with a ``usage``, or when the total is unknown. Never
        below what is spent already (answers are counted before their request settles, and
        the mean over the settled ones can be lower than the spend over all of them).
        """
        if self.total is None or self.done == 0 or not (self.tokens_in or self.tokens_out):
            return None
        if self.done >= self.total:
            return self.cost_usd
        return max(self.cost_usd, self.cost_usd / self.done * self.total)

    @property
    def done(self) -> int:
        """Requests settled and written this run."""
        return self.succeeded + self.failed


class RateMeter:
    """Rates over the last `horizon_s` seconds, from samples of cumulative counts.

    >>> meter = RateMeter(horizon_s=10.0)
    >>> meter.add(0.0, sent=0, tokens=0, done=0)
    >>> meter.add(5.0, sent=50, tokens=5_000, done=40, input_tokens=4_000, output_tokens=500)
    >>> meter.per_minute()
    (600.0, 60000.0, 8.0)
    >>> meter.tokens_per_minute()
    (48000.0, 6000.0)
    """

    __slots__ = ("_from_start", "_samples", "horizon_s", "window_s")

    def __init__(self, *, horizon_s: float = 10.0, window_s: float | None = None) -> None:
        self.horizon_s = horizon_s
        # With limits over a known window, the run's first window is sent at once at the
        # start: counted over the time since, it would read as a rate above the limit (3
        # windows' worth after 2.05 s). Until the start leaves the horizon, the span then
        # counts that first window's length too. Full token buckets at the start are the
        # same: give their length (bucket_s) as `window_s`.
        self.window_s = window_s or 0.0
        self._from_start = True
        self._samples: deque[tuple[float, int, float, int, float, float]] = deque()

    def add(
        self,
        now: float,
        *,
        sent: int,
        tokens: float,
        done: int,
        input_tokens: float = 0.0,
        output_tokens: float = 0.0,
    ) -> None:
        """Record the cumulative counts at `now`; forget samples older than the horizon.

        One sample at or before the horizon is kept, so the rate always spans the whole
        horizon once the run is that old.
        """
        samples = self._samples
        samples.append((now, sent, tokens, done, input_tokens, output_tokens))
        while len(samples) > 2 and samples[1][0] <= now - self.horizon_s:
            samples.popleft()
            self._from_start = False

    def per_minute(self) -> tuple[float, float, float]:
        """Return (requests per minute, tokens per minute, settled per second)."""
        span = self._span()
        if span is None:
            return 0.0, 0.0, 0.0
        first, last = self._samples[0], self._samples[-1]
        return (
            (last[1] - first[1]) * 60.0 / span,
            (last[2] - first[2]) * 60.0 / span,
            (last[3] - first[3]) / span,
        )

    def tokens_per_minute(self) -> tuple[float, float]:
        """Return (input tokens per minute, output tokens per minute)."""
        span = self._span()
        if span is None:
            return 0.0, 0.0
        first, last = self._samples[0], self._samples[-1]
        return (last[4] - first[4]) * 60.0 / span, (last[5] - first[5]) * 60.0 / span

    def _span(self) -> float | None:
        """The seconds the samples span (None: too few to tell a rate)."""
        if len(self._samples) < 2:
            return None
        span = self._samples[-1][0] - self._samples[0][0]
        if span <= 0:
            return None
        return span + self.window_s if self._from_start else span


@dataclass(frozen=True, kw_only=True, slots=True)
class Progress:
    """One frame of progress, ready to format."""

    done: int
    total: int | None
    succeeded: int
    failed: int
    retrying: int
    requests_per_minute: float
    tokens_per_minute: float
    rpm_limit: float | None
    tpm_limit: float | None
    rate_limited: int
    elapsed_s: float
    eta_s: float | None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    projected_cost_usd: float | None = None
    cache_hits: int = 0
    # Input tokens a minute (estimated when sent, replaced by the answers' usage) and output
    # tokens a minute (the answers' usage), with their limits; shown when a limit is set.
    input_tokens_per_minute: float = 0.0
    output_tokens_per_minute: float = 0.0
    itpm_limit: float | None = None
    otpm_limit: float | None = None


def snapshot(
    tally: BatchTally,
    meter: RateMeter,
    *,
    now: float,
    started: float,
    rpm_limit: float | None = None,
    tpm_limit: float | None = None,
    itpm_limit: float | None = None,
    otpm_limit: float | None = None,
) -> Progress:
    """Sample the tally into the meter at `now` and return the frame to show.

    The ETA is the requests left over the recent settling rate; ``None`` until something
    settles (or when the total is unknown).
    """
    meter.add(
        now,
        sent=tally.sent,
        tokens=tally.tokens_sent,
        done=tally.done,
        input_tokens=tally.input_sent,
        output_tokens=tally.tokens_out,
    )
    rpm, tpm, per_s = meter.per_minute()
    itpm, otpm = meter.tokens_per_minute()
    eta: float | None = None
    if tally.total is not None:
        left = max(tally.total - tally.done, 0)
        eta = 0.0 if left == 0 else (left / per_s if per_s > 0 else None)
    return Progress(
        done=tally.done,
        total=tally.total,
        succeeded=tally.succeeded,
        failed=tally.failed,
        retrying=tally.retrying,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        rate_limited=tally.rate_limited,
        elapsed_s=max(now - started, 0.0),
        eta_s=eta,
        tokens_in=tally.tokens_in,
        tokens_out=tally.tokens_out,
        cost_usd=tally.cost_usd,
        projected_cost_usd=tally.projected_cost_usd,
        cache_hits=tally.cache_hits,
        input_tokens_per_minute=itpm,
        output_tokens_per_minute=otpm,
        itpm_limit=itpm_limit,
        otpm_limit=otpm_limit,
    )
