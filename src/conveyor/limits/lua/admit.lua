-- Admit one call over ALL of a limiter's constraints at once, atomically, on Redis's clock.
--
-- The same rules as the local limiter (conveyor.limits.constraints), run where every process
-- sees the same state: a call is admitted only if, at the moment of Redis's TIME,
--   * no Retry-After pause is running (KEYS[2]),
--   * fewer than the concurrency limit hold a lease (KEYS[1]: slot id -> lease expiry),
--   * what the server said is left covers it (KEYS[3]: the header-learned budgets),
--   * for each constraint, its pacer (GCRA "virtual scheduling": the TAT key) lets it start,
--     and its sliding log (exact mode) holds at most `share` in (now - window, now].
-- Then it is booked in all of them; otherwise nothing is written and the reply says how long
-- to wait (exact for the windows and pacers; a short poll for a concurrency slot).
--
-- KEYS: 1 leases (zset), 2 pause (string), 3 server caps (hash), then per constraint three:
--       log (zset: slot id -> admission time), costs (hash: slot id -> cost, "_sum"), tat.
-- ARGV: 1 slot id, 2 cost (tokens), 3 concurrency limit (0: none), 4 lease seconds,
--       5 the time to use instead of TIME ('' except in tests, which drive a virtual clock),
--       6 number of constraints, then per constraint five: unit ('requests'|'tokens'), share
--       (0: paced mode, no log), window seconds, pacer interval seconds per unit, tolerance s.
-- Reply: {1, admitted_at} or {0, wait_seconds} (numbers as strings: Lua would truncate).

local function clock()
    if ARGV[5] ~= '' then return tonumber(ARGV[5]) end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local EPS = 1e-9
local now = clock()
local id = ARGV[1]
local cost = tonumber(ARGV[2])
local conc_limit = tonumber(ARGV[3])
local lease_s = tonumber(ARGV[4])
local n = tonumber(ARGV[6])
local wait = 0.0

local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then wait = pause - now end

if conc_limit > 0 then
    -- Leases not renewed in time belong to dead processes: their slots come back here.
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    if redis.call('ZCARD', KEYS[1]) >= conc_limit then
        local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
        wait = math.max(wait, math.min(tonumber(first[2]) - now, 0.02))
    end
end

for _, unit in ipairs({'requests', 'tokens'}) do
    local cap = redis.call('HMGET', KEYS[3], unit .. ':left', unit .. ':since',
                          unit .. ':until', unit .. ':refill')
    if cap[1] then
        local units = 1
        if unit == 'tokens' then units = cost end
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

for i = 0, n - 1 do
    local a = 7 + i * 5
    local unit, share = ARGV[a], tonumber(ARGV[a + 1])
    local window, tol = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 4])
    local log, costs, tatkey = KEYS[4 + i * 3], KEYS[5 + i * 3], KEYS[6 + i * 3]
    local units = 1
    if unit == 'tokens' then units = cost end
    local tat = tonumber(redis.call('GET', tatkey) or '-1e18')
    wait = math.max(wait, tat - tol - now)
    if share > 0 then
        local used = expire(log, costs, window)
        local excess = used + units - share
        if excess > EPS then
            -- The exact wait: the moment enough of the oldest admissions leave the window.
            -- The log is in time order, so that is the time of the last one that must leave.
            local latest = nil
            if unit ~= 'tokens' then
                -- Requests cost 1 each: the k-th oldest, read directly.
                local k = math.ceil(excess - EPS)
                local entry = redis.call('ZRANGE', log, k - 1, k - 1, 'WITHSCORES')
                if entry[2] then latest = tonumber(entry[2]) end
            else
                local freed, start = 0, 0
                while latest == nil do
                    local entries = redis.call('ZRANGE', log, start, start + 63, 'WITHSCORES')
                    if #entries == 0 then break end
                    local ids = {}
                    for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
                    local found = redis.call('HMGET', costs, unpack(ids))
                    for j = 1, #ids do
                        freed = freed + (tonumber(found[j]) or 0)
                        if freed >= excess - EPS then
                            latest = tonumber(entries[2 * j])
                            break
                        end
                    end
                    start = start + 64
                end
            end
            if latest == nil then latest = now end
            wait = math.max(wait, latest + window - now + EPS)
        end
    end
end

if wait > 0 then
    return {0, tostring(wait)}
end

for i = 0, n - 1 do
    local a = 7 + i * 5
    local unit, share = ARGV[a], tonumber(ARGV[a + 1])
    local window, interval = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local log, costs, tatkey = KEYS[4 + i * 3], KEYS[5 + i * 3], KEYS[6 + i * 3]
    local units = 1
    if unit == 'tokens' then units = cost end
    local tat = tonumber(redis.call('GET', tatkey) or '-1e18')
    tat = math.max(tat, now) + units * interval
    redis.call('SET', tatkey, tostring(tat), 'PX', math.ceil((tat - now + 60) * 1000))
    if share > 0 then
        redis.call('ZADD', log, now, id)
        redis.call('HSET', costs, id, tostring(units))
        redis.call('HINCRBYFLOAT', costs, '_sum', units)
        local ttl = math.ceil((window + 60) * 1000)
        redis.call('PEXPIRE', log, ttl)
        redis.call('PEXPIRE', costs, ttl)
    end
end

for _, unit in ipairs({'requests', 'tokens'}) do
    if redis.call('HEXISTS', KEYS[3], unit .. ':left') == 1 then
        local units = 1
        if unit == 'tokens' then units = cost end
        redis.call('HINCRBYFLOAT', KEYS[3], unit .. ':left', -units)
    end
end

if conc_limit > 0 then
    redis.call('ZADD', KEYS[1], now + lease_s, id)
end
return {1, tostring(now)}
