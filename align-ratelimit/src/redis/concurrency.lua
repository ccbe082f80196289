-- align-ratelimit's concurrency limit in Redis (RedisConcurrencyLimiter): one atomic run per
-- acquisition.
--
-- KEYS[1]  sorted set of leases: member a lease id, score when it expires (ms, server time)
-- ARGV     limit, lease (ms), lease id (empty: only count the leases in force)
-- Returns  {acquired (1/0), leases in force before this one}
--
-- A lease is released by ZREM when its request ends; one whose holder died expires on its own,
-- so a crashed instance's slots come back after the lease time.

local limit, lease, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local used = redis.call('ZCARD', KEYS[1])
if id == '' or used >= limit then
  return {0, used}
end
redis.call('ZADD', KEYS[1], now + lease, id)
-- The set lives as long as its longest lease.
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return {1, used}
