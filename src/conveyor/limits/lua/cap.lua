-- Hold every process to what the server said is left of a budget (rate-limit headers):
-- ARGV[2] units left now, full again (or back whole) in ARGV[3] s, refilling at ARGV[4]/s.
-- KEYS: 1 server caps (hash). ARGV: 1 unit, 5 time override ('' except in tests).
local now
if ARGV[5] ~= '' then now = tonumber(ARGV[5]) else
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local unit = ARGV[1]
redis.call('HSET', KEYS[1], unit .. ':left', ARGV[2], unit .. ':since', tostring(now),
           unit .. ':until', tostring(now + tonumber(ARGV[3])), unit .. ':refill', ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000) + 60000)
return 1
