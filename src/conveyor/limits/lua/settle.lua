-- Replace one admission's cost by the real one in each constraint of the dimensions that
-- changed: the window's log entry, if the window still holds it (one it already left has
-- nothing to correct), and the TAT of its pacer or bucket, moved by the gap (a refund moves
-- it back, a charge forward). A debt bucket (output tokens) booked nothing at admission: the
-- answer's output is taken now, on Redis's clock, as TokenBucket.produce does (mode 'p'),
-- which may leave it below zero.
--
-- KEYS: per changed constraint two: costs, state (as in admit.lua).
-- ARGV: 1 slot id, 2 the time to use instead of TIME ('' except in tests), then per changed
--       constraint four: mode ('s' settle, 'p' produce), the real cost, the amount to move
--       (settle: real - booked; produce: real - produced so far), and real - booked (which
--       corrects a debt bucket's `spread` of reservations).

local function num(x) return string.format('%.17g', x) end

local function clock()
    if ARGV[2] ~= '' then return tonumber(ARGV[2]) end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local id = ARGV[1]
local now = clock()
for i = 0, #KEYS / 2 - 1 do
    local costs, state = KEYS[1 + i * 2], KEYS[2 + i * 2]
    local mode = ARGV[3 + i * 4]
    local cost, amount = tonumber(ARGV[4 + i * 4]), tonumber(ARGV[5 + i * 4])
    local delta = tonumber(ARGV[6 + i * 4])
    local old = redis.call('HGET', costs, id)
    if old then
        redis.call('HSET', costs, id, num(cost))
        redis.call('HINCRBYFLOAT', costs, '_sum', cost - tonumber(old))
    end
    local st = redis.call('HMGET', state, 'tat', 'per', 'spread')
    if mode == 'p' and st[3] and st[2] and delta ~= 0 then
        redis.call('HSET', state, 'spread', num(tonumber(st[3]) + delta / tonumber(st[2])))
    end
    if st[1] and st[2] then
        local tat, per = tonumber(st[1]), tonumber(st[2])
        local new = tat + amount / per
        if mode == 'p' then new = math.max(tat, now) + amount / per end
        local ttl = redis.call('PTTL', state)
        redis.call('HSET', state, 'tat', num(new))
        local until_ms = math.ceil((new - now + 3600) * 1000)
        if ttl < until_ms then redis.call('PEXPIRE', state, until_ms) end
    end
end
return 1
