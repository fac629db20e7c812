-- Hold every process to a limit the API stated below ours: KEYS[1] (hash) keeps, per
-- dimension and period (ARGV[1], e.g. 'tokens/60'), the lowest limit adopted (ARGV[2]), for
-- ARGV[3] seconds after it was last adopted. admit.lua scales that dimension's constraints
-- by it in every process. Idempotent: adopting the same limit again changes nothing but the
-- expiry, and a higher one never replaces a lower.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old or tonumber(ARGV[2]) < tonumber(old) then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return redis.call('HGET', KEYS[1], ARGV[1])
