"""The admission script, driven from several simulated clients: the limit holds for all.

The script runs in the real Redis, on a virtual server clock passed in its time argument
(what ``TIME`` returns in production), so each example is exact and instant. The clients are
simulated: each has its own clock, and retries when *its* clock says the wait it was told is
over; one clock is skewed (it runs 0.5x to 1.5x as fast as the server's). The script never
reads a client's clock (an offset between clocks therefore changes nothing), so the skewed
client can only retry early, and be refused, or late.
"""

import heapq
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.limits.redis_limiter import RedisLimits, script

from ..services import redis_url

WINDOW_S = 1.0
REQUESTS_PER_WINDOW = 5
TOKENS_PER_WINDOW = 100


def _clients() -> st.SearchStrategy[list[tuple[float, list[tuple[int, float, float]]]]]:
    calls = st.lists(
        st.tuples(
            st.integers(1, 40),  # estimated tokens
            st.floats(0.0, 1.0),  # fraction of the estimate really used (a refund)
            st.floats(0.0, 0.3),  # gap before the client's next call, seconds
        ),
        min_size=1,
        max_size=12,
    )
    client = st.tuples(st.floats(0.0, 1.5), calls)  # start time, calls
    return st.lists(client, min_size=2, max_size=4)


@settings(max_examples=100, deadline=None)
@given(clients=_clients(), skew_rate=st.floats(0.5, 1.5))
def test_no_window_admits_more_than_its_share_whatever_the_clients_clocks(clients, skew_rate):
    """Across clients (one skewed), every 1 s window holds at most its requests and tokens."""
    import redis

    url = redis_url()
    sync = redis.Redis.from_url(url)
    limits = RedisLimits(url, prefix=f"conveyor-test:{uuid.uuid4().hex}", client=sync)
    limiter = limits.limiter(
        "api",
        requests_per_second=REQUESTS_PER_WINDOW,
        tokens_per_second=TOKENS_PER_WINDOW,
        window_s=WINDOW_S,
    )
    admit = sync.register_script(script("admit"))
    settle = sync.register_script(script("settle"))
    # (server time, sequence, client, call index): a client's next attempt.
    queue: list[tuple[float, int, int, int]] = []
    seq = 0
    for k, (start, _) in enumerate(clients):
        heapq.heappush(queue, (start, seq, k, 0))
        seq += 1
    admitted: list[tuple[float, float, float]] = []  # (server time, requests, tokens)
    steps = 0
    try:
        while queue and steps < 3000:
            steps += 1
            now, _, k, i = heapq.heappop(queue)
            estimate, used, gap = clients[k][1][i]
            key = f"c{k}-{i}-{steps}"
            ok, value = admit(keys=limiter.keys, args=limiter.admit_args(key, estimate, repr(now)))
            rate = skew_rate if k == 0 else 1.0
            if int(ok) == 1:
                real = round(estimate * used)
                settle(
                    keys=limiter.token_keys, args=limiter.settle_args(key, real, real - estimate)
                )
                admitted.append((float(value), 1.0, float(real)))
                if i + 1 < len(clients[k][1]):
                    heapq.heappush(queue, (now + gap / rate, seq, k, i + 1))
            else:
                # The client waits what it was told, on its own clock: the skewed one's
                # second lasts 1/rate of the server's (its offset changes nothing: waits are
                # durations, and the script never sees a client's time).
                wait = max(float(value), 1e-3)
                heapq.heappush(queue, (now + wait / rate, seq, k, i))
            seq += 1
        assert steps < 3000, "the simulation did not finish"
        admitted.sort()
        for end, _, _ in admitted:
            inside = [a for a in admitted if end - WINDOW_S < a[0] <= end]
            assert sum(a[1] for a in inside) <= REQUESTS_PER_WINDOW
            assert sum(a[2] for a in inside) <= TOKENS_PER_WINDOW + 1e-6
        assert len(admitted) == sum(len(c[1]) for c in clients)
    finally:
        for key in sync.scan_iter(f"{limits.prefix}:*"):
            sync.delete(key)
        sync.close()
