-- Admit one call over ALL of a limiter's constraints at once, atomically, on Redis's clock.
--
-- The same rules as the local limiter (conveyor.limits.constraints and conveyor.policy), run
-- where every process sees the same state: a call is admitted only if, at Redis's TIME,
--   * no process saw the API's quota exhausted (KEYS[5]),
--   * no Retry-After pause is running (KEYS[2]),
--   * fewer than the concurrency limit hold a lease (KEYS[1]: slot id -> lease expiry),
--   * what the server said is left of each dimension covers it (KEYS[3]),
--   * every constraint lets it start, in its shape:
--       'w' window: its pacer (GCRA) lets it start, and its sliding log holds at most `share`
--           in (now - window, now] with it;
--       'p' paced: its GCRA lets it start (tat - tolerance <= now);
--       'b' bucket: a token bucket kept as a TAT, `tat - now <= (capacity - cost - kept) /
--           rate`, where `kept` is the reserve's share of the capacity, as far as the call
--           leaves room for it (policy/bucket.py, BUCKET_RESERVE); a debt bucket (output tokens) mirrors the API's: it needs to
--           hold a margin (half the bucket), takes nothing now, and takes the answer's output
--           when it is settled (settle.lua), which may leave it below zero; beside it, the
--           reservations are booked on a second TAT (`spread`: holding its room to admit,
--           taken now, corrected at the answer) that spreads calls at the rate. A call let in
--           from a full bucket is booked as of `late` s later (BUCKET_LATE_S: the API's bucket, still full, wastes that refill).
--     A limit some process adopted from the API's headers (KEYS[4], per dimension and period)
--     scales the constraint's figures, exactly as Constraint.set_limit does locally.
-- Then it is booked in all of them; otherwise nothing is written and the reply says how long
-- to wait (exact for windows, pacers and buckets; a short poll for a concurrency slot).
--
-- Each constraint's state is a hash: `tat` and `per`, the units per second its TAT is counted
-- in (a pacer: 1 / interval; a bucket: its refill rate), so that settling moves it by
-- delta / per, and a bucket whose rate changed is carried over as TokenBucket.set_rate does.
--
-- KEYS: 1 leases (zset), 2 pause (string), 3 server caps (hash), 4 adopted limits (hash),
--       5 quota halt (string), then per constraint three: log (zset: slot id -> admission
--       time), costs (hash: slot id -> cost, and "_sum"), state (hash: tat, per).
-- ARGV: 1 slot id, 2 concurrency limit (0: none), 3 lease seconds, 4 the time to use instead
--       of TIME ('' except in tests, which drive a virtual clock), 5 number of constraints,
--       6 number of dimensions, then per dimension two: name, units; then per constraint
--       nine: kind, units, limit (per its period), adopted-limit field, and five figures:
--       'w': share, window s, pacer interval s per unit, 1 if every entry costs 1 else 0, 0;
--       'p': limit, 0, interval s per unit, tolerance s, 0;
--       'b': refill per s, capacity, 1 for a debt bucket else 0, late s, and the reserve
--           share (a debt bucket: its spread's room, Constraint.room).
-- Reply: {1, admitted_at}, {0, wait_seconds}, {-1, the halt's message}, or {-2, constraint
--        index (0-based), the largest cost it allows now} (numbers as strings: Lua truncates).

local function clock()
    if ARGV[4] ~= '' then return tonumber(ARGV[4]) end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function num(x) return string.format('%.17g', x) end

local EPS, PAD = 1e-9, 1e-9
local now = clock()
local id = ARGV[1]
local conc_limit = tonumber(ARGV[2])
local lease_s = tonumber(ARGV[3])
local n = tonumber(ARGV[5])
local ndims = tonumber(ARGV[6])
local first = 7 + 2 * ndims
local wait = 0.0

local halt = redis.call('GET', KEYS[5])
if halt then return {-1, halt} end

local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then wait = pause - now end

if conc_limit > 0 then
    -- Leases not renewed in time belong to dead processes: their slots come back here.
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    if redis.call('ZCARD', KEYS[1]) >= conc_limit then
        local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
        wait = math.max(wait, math.min(tonumber(oldest[2]) - now, 0.02))
    end
end

for d = 0, ndims - 1 do
    local unit, units = ARGV[7 + 2 * d], tonumber(ARGV[8 + 2 * d])
    local cap = redis.call('HMGET', KEYS[3], unit .. ':left', unit .. ':since',
                          unit .. ':until', unit .. ':refill')
    if cap[1] then
        local until_ = tonumber(cap[3])
        if now < until_ then
            local refill = tonumber(cap[4])
            local avail = tonumber(cap[1]) + refill * math.max(now - tonumber(cap[2]), 0)
            local short = units - avail
            if short > EPS then
                local w = until_ - now
                if refill > 0 then w = math.min(short / refill, w) end
                wait = math.max(wait, w)
            end
        else
            redis.call('HDEL', KEYS[3], unit .. ':left', unit .. ':since', unit .. ':until',
                       unit .. ':refill')
        end
    end
end

-- Drop log entries that left the window, keeping each log's cost sum in step.
local function expire(log, costs, window)
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
    for i = 1, #old, 500 do
        local chunk = {unpack(old, i, math.min(i + 499, #old))}
        local gone = redis.call('HMGET', costs, unpack(chunk))
        local freed = 0
        for _, c in ipairs(gone) do freed = freed + (tonumber(c) or 0) end
        redis.call('ZREM', log, unpack(chunk))
        redis.call('HDEL', costs, unpack(chunk))
        redis.call('HINCRBYFLOAT', costs, '_sum', -freed)
    end
    if redis.call('ZCARD', log) == 0 then redis.call('HSET', costs, '_sum', 0) end
    return tonumber(redis.call('HGET', costs, '_sum') or '0')
end

-- The moment enough of a log's oldest admissions leave the window for `excess` to fit: the
-- time of the last one that must leave (the log is in time order).
local function freed_at(log, costs, excess, unit_costs)
    if unit_costs then  -- every entry costs 1: the k-th oldest, read directly
        local k = math.ceil(excess - EPS)
        local entry = redis.call('ZRANGE', log, k - 1, k - 1, 'WITHSCORES')
        if entry[2] then return tonumber(entry[2]) end
        return nil
    end
    local freed, start = 0, 0
    while true do
        local entries = redis.call('ZRANGE', log, start, start + 63, 'WITHSCORES')
        if #entries == 0 then return nil end
        local ids = {}
        for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
        local found = redis.call('HMGET', costs, unpack(ids))
        for j = 1, #ids do
            freed = freed + (tonumber(found[j]) or 0)
            if freed >= excess - EPS then return tonumber(entries[2 * j]) end
        end
        start = start + 64
    end
end

local plan = {}
for i = 0, n - 1 do
    local a = first + i * 9
    local kind, units, limit = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local p1, p2 = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
    local p3, p4, p5 = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
    local scale = 1
    local adopted = redis.call('HGET', KEYS[4], ARGV[a + 3])
    if adopted and tonumber(adopted) < limit then scale = tonumber(adopted) / limit end
    local log, costs, state = KEYS[6 + i * 3], KEYS[7 + i * 3], KEYS[8 + i * 3]
    local st = redis.call('HMGET', state, 'tat', 'per', 'spread')
    local tat = tonumber(st[1]) or -1e18
    local spread = tonumber(st[3]) or -1e18
    local step = {kind = kind, units = units, log = log, costs = costs, state = state}
    if kind == 'b' then
        local rate, capacity, debt = p1 * scale, p2 * scale, p3 == 1
        step.debt, step.late = debt, p4
        local old = tonumber(st[2])
        if old and math.abs(old - rate) > 1e-12 * rate then
            -- The rate changed (an adopted limit): keep what is owed, as TokenBucket.set_rate.
            local owed = math.max(tat - now, 0) * old
            if owed > 0 then tat = now + owed / rate else tat = math.min(tat, now) end
            owed = math.max(spread - now, 0) * old
            if owed > 0 then spread = now + owed / rate else spread = math.min(spread, now) end
        end
        local need = units
        if debt then need = capacity / 2 end
        if need > capacity + EPS then return {-2, i, num(capacity)} end
        -- What a call must leave in a bucket that is not a debt: TokenBucket.wait_s's `kept`.
        local kept = 0
        if not debt then kept = math.min(p5 * capacity, capacity - need) end
        local w = tat - (capacity - need - kept) / rate - now
        if debt then
            if w >= 0 then wait = math.max(wait, w + PAD) end
            -- The reservations, spread at the rate: holding the room's share of the capacity
            -- (at most this call's reservation; room 0: above zero) before it is taken.
            local sw = spread - (capacity - math.min(units, p5 * capacity)) / rate - now
            if sw >= 0 then wait = math.max(wait, sw + PAD) end
            step.spread = spread
        elseif w > EPS then
            wait = math.max(wait, w + PAD)
        end
        step.tat, step.per = tat, rate
    else
        local interval, tol = p3 / scale, 0
        if kind == 'p' then
            tol = p4 / scale
            if units > p1 * scale + EPS then return {-2, i, num(p1 * scale)} end
        end
        wait = math.max(wait, tat - tol - now)
        step.tat, step.per = tat, 1 / interval
        if kind == 'w' then
            local share, window = p1 * scale, p2
            if units > share + EPS then return {-2, i, num(share)} end
            step.window = window
            local excess = expire(log, costs, window) + units - share
            if excess > EPS then
                local latest = freed_at(log, costs, excess, p4 == 1) or now
                wait = math.max(wait, latest + window - now + EPS)
            end
        end
    end
    plan[i + 1] = step
end

if wait > 0 then
    return {0, tostring(wait)}
end

for _, step in ipairs(plan) do
    -- GCRA and the bucket book alike: the TAT moves by the cost, in the state's units/s;
    -- a debt bucket books nothing now (its output is taken when settled).
    local tat = math.max(step.tat, now) + step.units / step.per
    if step.kind == 'b' then
        if step.debt then
            tat = step.tat
        else
            tat = math.max(step.tat, now + step.late) + step.units / step.per
        end
    end
    redis.call('HSET', step.state, 'tat', num(tat), 'per', num(step.per))
    if step.spread then
        local spread = math.max(step.spread, now) + step.units / step.per
        redis.call('HSET', step.state, 'spread', num(spread))
        tat = math.max(tat, spread)  -- the key lives as long as either
    end
    redis.call('PEXPIRE', step.state, math.ceil((math.max(tat, now) - now + 3600) * 1000))
    if step.kind == 'w' then
        redis.call('ZADD', step.log, now, id)
        redis.call('HSET', step.costs, id, num(step.units))
        redis.call('HINCRBYFLOAT', step.costs, '_sum', step.units)
        local ttl = math.ceil((step.window + 60) * 1000)
        redis.call('PEXPIRE', step.log, ttl)
        redis.call('PEXPIRE', step.costs, ttl)
    end
end

for d = 0, ndims - 1 do
    local unit, units = ARGV[7 + 2 * d], tonumber(ARGV[8 + 2 * d])
    if redis.call('HEXISTS', KEYS[3], unit .. ':left') == 1 then
        redis.call('HINCRBYFLOAT', KEYS[3], unit .. ':left', -units)
    end
end

if conc_limit > 0 then
    redis.call('ZADD', KEYS[1], now + lease_s, id)
end
return {1, num(now)}
