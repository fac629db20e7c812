"""Progress figures from counts and times, exactly: rates over a horizon and the ETA."""

from conveyor.http import BatchTally
from conveyor.http.tally import Progress, RateMeter, snapshot


def test_rates_span_the_horizon_once_the_run_is_that_old():
    """Old samples are dropped, keeping one at the horizon: the rate covers the last 10 s."""
    meter = RateMeter(horizon_s=10.0)
    meter.add(0.0, sent=0, tokens=0, done=0)
    meter.add(10.0, sent=1000, tokens=0, done=0)  # a burst in the first 10 s
    meter.add(15.0, sent=1000, tokens=0, done=0)
    meter.add(20.0, sent=1100, tokens=500, done=50)
    assert meter.per_minute() == (600.0, 3000.0, 5.0)  # (1100-1000)/10 s


def test_the_first_window_sent_at_once_does_not_read_as_a_rate_above_the_limit():
    """Three windows of 120 sent at 0, 1 and 2 s read as 120/s, not 175/s, until the start ages."""
    meter = RateMeter(horizon_s=10.0, window_s=1.0)
    meter.add(0.0, sent=0, tokens=0, done=0)
    meter.add(2.05, sent=360, tokens=0, done=0)
    assert meter.per_minute()[0] == 360 * 60 / 3.05
    for t in range(3, 21):
        meter.add(float(t), sent=120 * (t + 1), tokens=0, done=0)
    # The start has left the horizon: the last 10 s held 10 windows, with no start burst.
    assert meter.per_minute()[0] == 7200.0


def test_no_rate_before_two_samples():
    """One sample (or none) gives zero rates rather than a division by zero."""
    meter = RateMeter()
    assert meter.per_minute() == (0.0, 0.0, 0.0)
    meter.add(1.0, sent=5, tokens=5, done=5)
    assert meter.per_minute() == (0.0, 0.0, 0.0)
    meter.add(1.0, sent=6, tokens=6, done=6)
    assert meter.per_minute() == (0.0, 0.0, 0.0)


def test_snapshot_freezes_counts_rates_and_eta():
    """The ETA is what is left over the recent settling rate; limits are passed through."""
    tally = BatchTally(total=1000, succeeded=90, failed=10, retrying=3, rate_limited=2)
    meter = RateMeter()
    meter.add(100.0, sent=0, tokens=0, done=0)
    tally.sent, tally.tokens_sent = 120, 12_000.0
    frame = snapshot(tally, meter, now=110.0, started=100.0, rpm_limit=600, tpm_limit=None)
    assert frame == Progress(
        done=100,
        total=1000,
        succeeded=90,
        failed=10,
        retrying=3,
        requests_per_minute=720.0,
        tokens_per_minute=72_000.0,
        rpm_limit=600,
        tpm_limit=None,
        rate_limited=2,
        elapsed_s=10.0,
        eta_s=90.0,  # 900 left at 10 per second
    )


def test_eta_is_unknown_until_something_settles_and_zero_at_the_end():
    """Without a settling rate the ETA is None; with nothing left it is 0."""
    tally = BatchTally(total=10)
    meter = RateMeter()
    assert snapshot(tally, meter, now=0.0, started=0.0).eta_s is None
    tally.succeeded = 10
    assert snapshot(tally, meter, now=1.0, started=0.0).eta_s == 0.0
    assert snapshot(BatchTally(), RateMeter(), now=1.0, started=0.0).eta_s is None
