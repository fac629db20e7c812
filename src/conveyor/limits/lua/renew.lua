-- Extend the leases of the slots a live process still holds (and only those still leased:
-- XX, so a lease that already lapsed is not brought back).
-- KEYS: 1 leases. ARGV: 1 lease seconds, 2 time override ('' except in tests), 3.. slot ids.
local now
if ARGV[2] ~= '' then now = tonumber(ARGV[2]) else
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local renewed = 0
for i = 3, #ARGV do
    renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i])
end
return renewed
