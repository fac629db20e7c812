-- Date an admission at the moment its call goes out, on Redis's clock: a call that waited in
-- its process (a busy event loop, a descheduled process) after Redis admitted it is counted
-- in its windows from when the server can see it, never earlier. Moving it later only keeps
-- it in its windows longer (GT: never earlier than it was).
-- A call answered later than a steady API's fastest round trip is dated that much before now
-- (ARGV[3]); GT keeps any date from moving earlier than the one it has.
-- KEYS: the logs of the window constraints. ARGV: 1 slot id, 2 time override ('' but tests),
-- 3 seconds before now to date it at (optional, 0).
local now
if ARGV[2] ~= '' then now = tonumber(ARGV[2]) else
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
if ARGV[3] then now = now - tonumber(ARGV[3]) end
for _, log in ipairs(KEYS) do
    redis.call('ZADD', log, 'XX', 'GT', now, ARGV[1])
end
return 1
