-- Replace one admission's cost by the real one in each constraint of the dimensions that
-- changed: the window's log entry, if the window still holds it (one it already left has
-- nothing to correct), and the TAT of its pacer or bucket, moved by the gap (a refund moves
-- it back, a charge forward: a debt bucket may go below zero, as policy/bucket.py settles).
--
-- KEYS: per changed constraint two: costs, state (as in admit.lua).
-- ARGV: 1 slot id, then per changed constraint two: the real cost, the gap (real - booked).

local function num(x) return string.format('%.17g', x) end

local id = ARGV[1]
for i = 0, #KEYS / 2 - 1 do
    local costs, state = KEYS[1 + i * 2], KEYS[2 + i * 2]
    local cost, delta = tonumber(ARGV[2 + i * 2]), tonumber(ARGV[3 + i * 2])
    local old = redis.call('HGET', costs, id)
    if old then
        redis.call('HSET', costs, id, num(cost))
        redis.call('HINCRBYFLOAT', costs, '_sum', cost - tonumber(old))
    end
    local st = redis.call('HMGET', state, 'tat', 'per')
    if st[1] and st[2] then
        local ttl = redis.call('PTTL', state)
        local moved = delta / tonumber(st[2])
        redis.call('HSET', state, 'tat', num(tonumber(st[1]) + moved))
        if ttl > 0 then
            redis.call('PEXPIRE', state, ttl + math.max(math.ceil(moved * 1000), 0))
        end
    end
end
return 1
