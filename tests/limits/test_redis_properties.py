"""The admission script, driven from several simulated clients: the limit holds for all.

The script runs in the real Redis, on a virtual server clock passed in its time argument
(what ``TIME`` returns in production), so each example is exact and instant. The clients are
simulated: each has its own clock, and retries when *its* clock says the wait it was told is
over; one clock is skewed (it runs 0.5x to 1.5x as fast as the server's). The script never
reads a client's clock (an offset between clocks therefore changes nothing), so the skewed
client can only retry early, and be refused, or late.

Each admitted call leaves its client some time after Redis admitted it (up to half a window:
a new connection, a busy event loop), and the client then re-dates it (``lua/redate.lua``,
what `RedisSlot.mark_sent` sends), which Redis runs a little later still. That delay is real
time, the same whatever a client's clock says. (The guarantee needs the re-dating to reach
Redis within one window of the admission: a call still unsent then is no longer counted, and
its re-dating cannot bring it back. The engine dates each call as its attempt starts, the
moment it is admitted, so only the connection's set-up separates that from the call leaving.)
The windows are checked at the moments the calls left, as the API counts them: re-dating must
never let a window exceed its share.
"""

import heapq
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.limits.constraints import BUCKET_MARGIN, DEBT_DIMENSIONS
from conveyor.limits.redis_limiter import RedisLimiter, RedisLimits, script
from conveyor.policy.rates import Rate

from ..services import redis_url

WINDOW_S = 1.0
REQUESTS_PER_WINDOW = 5
TOKENS_PER_WINDOW = 100


#: One call: estimated tokens, fraction used, gap to the next, delay before it leaves, lag of
#: its re-dating.
Call = tuple[int, float, float, float, float]


def _clients() -> st.SearchStrategy[list[tuple[float, list[Call]]]]:
    calls = st.lists(
        st.tuples(
            st.integers(1, 40),  # estimated tokens
            st.floats(0.0, 1.0),  # fraction of the estimate really used (a refund)
            st.floats(0.0, 0.3),  # gap before the client's next call, seconds
            st.floats(0.0, 0.5),  # from admission to the call leaving the client, seconds
            st.floats(0.0, 0.05),  # from the call leaving to Redis running the re-dating
        ),
        min_size=1,
        max_size=12,
    )
    client = st.tuples(st.floats(0.0, 1.5), calls)  # start time, calls
    return st.lists(client, min_size=2, max_size=4)


def _assert_within_shares(sent: list[tuple[float, float, float]]) -> None:
    """Every window ending at a call's departure holds at most its requests and tokens."""
    sent.sort()
    for end, _, _ in sent:
        inside = [a for a in sent if end - WINDOW_S < a[0] <= end]
        assert sum(a[1] for a in inside) <= REQUESTS_PER_WINDOW
        assert sum(a[2] for a in inside) <= TOKENS_PER_WINDOW + 1e-6


def _sync_limiters(count: int, **limits) -> tuple[Any, list[RedisLimiter]]:
    """`count` limiters on one Redis and one fresh key prefix: `count` simulated processes."""
    import redis

    url = redis_url()
    sync = redis.Redis.from_url(url)
    prefix = f"conveyor-test:{uuid.uuid4().hex}"
    made = [
        RedisLimits(url, prefix=prefix, client=sync).limiter("api", **limits) for _ in range(count)
    ]
    return sync, made


def _forget(sync: Any, limiter: RedisLimiter) -> None:
    for key in sync.scan_iter(f"{limiter.redis.prefix}:*"):
        sync.delete(key)
    sync.close()


@settings(max_examples=100, deadline=None)
@given(clients=_clients(), skew_rate=st.floats(0.5, 1.5))
def test_no_window_admits_more_than_its_share_whatever_the_clients_clocks(clients, skew_rate):
    """Across clients (one skewed), calls sent late and re-dated: no 1 s window over its share."""
    sync, limiters = _sync_limiters(
        len(clients),
        requests_per_second=REQUESTS_PER_WINDOW,
        tokens_per_second=TOKENS_PER_WINDOW,
        window_s=WINDOW_S,
    )
    admit = sync.register_script(script("admit"))
    settle = sync.register_script(script("settle"))
    redate = sync.register_script(script("redate"))
    # (server time, sequence, what, client, call index, slot id): "try" is a client's next
    # admission attempt, "redate" the re-dating of an admitted call Redis runs at that time.
    queue: list[tuple[float, int, str, int, int, str]] = []
    seq = 0
    for k, (start, _) in enumerate(clients):
        heapq.heappush(queue, (start, seq, "try", k, 0, ""))
        seq += 1
    sent: list[tuple[float, float, float]] = []  # (server time it left, requests, tokens)
    steps = 0
    try:
        while queue and steps < 5000:
            steps += 1
            now, _, what, k, i, key = heapq.heappop(queue)
            shared = limiters[k].admission
            if what == "redate":
                redate(keys=shared.logs, args=[key, repr(now)])
                seq += 1
                continue
            estimate, used, gap, delay, lag = clients[k][1][i]
            key = f"c{k}-{i}-{steps}"
            units = {"requests": 1.0, "tokens": float(estimate)}
            ok, value = admit(keys=shared.keys, args=shared.admit_args(key, units, repr(now)))
            rate = skew_rate if k == 0 else 1.0
            if int(ok) == 1:
                real = round(estimate * used)
                keys, args = shared.settle_args(key, {"tokens": (real, real - estimate)})
                settle(keys=keys, args=args)
                # The call leaves `delay` later (a connection, a busy event loop: real time,
                # whatever the client's clock says); the re-dating reaches Redis after that
                # (it is sent once the headers are out).
                left = now + delay
                sent.append((left, 1.0, float(real)))
                heapq.heappush(queue, (left + lag, seq, "redate", k, i, key))
                seq += 1
                if i + 1 < len(clients[k][1]):
                    heapq.heappush(queue, (now + gap / rate, seq, "try", k, i + 1, ""))
            else:
                # The client waits what it was told, on its own clock: the skewed one's
                # second lasts 1/rate of the server's (its offset changes nothing: waits are
                # durations, and the script never sees a client's time).
                wait = max(float(value), 1e-3)
                heapq.heappush(queue, (now + wait / rate, seq, "try", k, i, ""))
            seq += 1
        assert steps < 5000, "the simulation did not finish"
        _assert_within_shares(sent)
        assert len(sent) == sum(len(c[1]) for c in clients)
    finally:
        _forget(sync, limiters[0])


#: The bucket test's limits: Anthropic's shape, small: per second, each bucket holding 1 s.
BUCKET_RATES = {"requests": 10.0, "input_tokens": 300.0, "output_tokens": 100.0}

#: One call: input tokens, output bound (max_tokens), fraction of the input really counted
#: (a refund), fraction of the bound really produced, gap before the client's next call.
BucketCall = tuple[int, int, float, float, float]


def _bucket_clients() -> st.SearchStrategy[list[tuple[float, list[BucketCall]]]]:
    calls = st.lists(
        st.tuples(
            st.integers(1, 300),  # input tokens (at most the bucket's capacity)
            st.integers(1, 400),  # output bound: may exceed the output bucket (a debt)
            st.floats(0.0, 1.0),  # input really counted, x the estimate
            st.floats(0.0, 1.0),  # output really produced, x the bound
            st.floats(0.0, 0.3),  # gap before the client's next call, seconds
        ),
        min_size=1,
        max_size=12,
    )
    return st.lists(st.tuples(st.floats(0.0, 1.0), calls), min_size=2, max_size=4)


@settings(max_examples=100, deadline=None)
@given(clients=_bucket_clients())
def test_no_interval_admits_more_than_each_bucket_allows_across_processes(clients):
    """Anthropic-like buckets shared by 2-4 limiters (processes), each call settled at once.

    Over any interval [a, b] of admissions, per dimension: requests and input tokens (at
    their real, refunded costs) <= capacity + refill * (b - a); output tokens (a debt: a call
    only needs the bucket to hold a margin, then its real output is taken as it answers,
    here at once) <= the same + the last call's output, the one overdraw. Refunds settled by
    one process let the others in sooner.
    """
    rates = [Rate(limit * 60, per="minute", unit=dim) for dim, limit in BUCKET_RATES.items()]
    sync, limiters = _sync_limiters(len(clients), rates=rates, bucket_s=1.0)
    admit = sync.register_script(script("admit"))
    settle = sync.register_script(script("settle"))
    queue: list[tuple[float, int, int, int]] = []  # (server time, sequence, client, call)
    for k, (start, _) in enumerate(clients):
        heapq.heappush(queue, (start, k, k, 0))
    seq = len(clients)
    admitted: list[tuple[float, dict[str, float]]] = []  # (server time, real units)
    steps = 0
    try:
        while queue and steps < 5000:
            steps += 1
            now, _, k, i = heapq.heappop(queue)
            limiter = limiters[k]
            inp, bound, in_used, out_used, gap = clients[k][1][i]
            units = limiter._units({"input_tokens": inp, "output_tokens": bound})
            key = f"c{k}-{i}-{steps}"
            shared = limiter.admission
            reply = admit(keys=shared.keys, args=shared.admit_args(key, units, repr(now)))
            if int(reply[0]) == 1:
                real = {
                    "input_tokens": round(inp * in_used),
                    "output_tokens": round(bound * out_used),
                }
                booked = {d: units[d] for d in real}
                settled = limiter.costs.real(booked, real)  # and the output estimate learns
                changes = {d: (settled[d], settled[d] - booked[d]) for d in settled}
                keys, args = shared.settle_args(key, changes, {}, repr(now))
                settle(keys=keys, args=args)
                admitted.append((now, {"requests": 1.0, **settled}))
                if i + 1 < len(clients[k][1]):
                    heapq.heappush(queue, (now + gap, seq, k, i + 1))
            else:
                assert int(reply[0]) == 0, reply
                heapq.heappush(queue, (now + max(float(reply[1]), 1e-4), seq, k, i))
            seq += 1
        assert steps < 5000, "the simulation did not finish"
        assert len(admitted) == sum(len(c[1]) for c in clients)
        refill = {dim: limit * (1 - BUCKET_MARGIN) for dim, limit in BUCKET_RATES.items()}
        for dim, capacity in BUCKET_RATES.items():
            for i, (start, _) in enumerate(admitted):
                inside = 0.0
                for end, cost in admitted[i:]:
                    inside += cost[dim]
                    overdraw = cost[dim] if dim in DEBT_DIMENSIONS else 0.0
                    bound = capacity + refill[dim] * (end - start) + overdraw
                    assert inside <= bound + 1e-6, (dim, start, end, inside, bound)
    finally:
        _forget(sync, limiters[0])
