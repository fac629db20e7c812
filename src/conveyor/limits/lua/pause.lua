-- Pause every process sharing the limiter: nobody is admitted for ARGV[1] seconds from now
-- (Redis's clock), unless a longer pause already runs. KEYS: 1 pause. ARGV: 2 time override.
local now
if ARGV[2] ~= '' then now = tonumber(ARGV[2]) else
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
    redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return tostring(math.max(until_, current))
