-- Replace one admission's token cost by the real one, in every token constraint that still
-- holds it (a window it already left has nothing to correct), and move each pacer by the gap.
--
-- KEYS: per token constraint three: log, costs, tat (as in admit.lua).
-- ARGV: 1 slot id, 2 the real cost, 3 the gap (real - booked), 4 n, then per constraint the
--       pacer interval in seconds per unit.

local id, cost, delta, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 0, n - 1 do
    local costs, tatkey = KEYS[2 + i * 3], KEYS[3 + i * 3]
    local old = redis.call('HGET', costs, id)
    if old then
        redis.call('HSET', costs, id, tostring(cost))
        redis.call('HINCRBYFLOAT', costs, '_sum', cost - tonumber(old))
    end
    local tat = redis.call('GET', tatkey)
    if tat then
        local ttl = redis.call('PTTL', tatkey)
        local moved = tonumber(tat) + delta * tonumber(ARGV[5 + i])
        if ttl > 0 then
            redis.call('SET', tatkey, tostring(moved), 'PX', ttl)
        end
    end
end
return 1
