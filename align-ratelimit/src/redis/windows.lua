-- align-ratelimit's named limits in Redis (RedisWindowSet): one atomic run per check over all
-- the group's counters named, all or nothing.
--
-- KEYS[i]  limit i's counter base: <prefix>w:<group length>:<group>:<hex name>:<window ms>;
--          its count for window number n (floor(now_ms / window_ms)) is the integer at
--          KEYS[i] .. ':' .. n
-- ARGV     3 per limit, from 3i-2: window (ms), cost, and the most the counter may hold before
--          this check for the cost to fit (limit - cost; '' when the cost exceeds the limit),
--          all decimal
-- Returns  {refused (1-based index of the first limit that refuses; 0: admitted and spent),
--          then per limit: used (before this check), reset (µs until its window ends)}, all as
--          decimal strings
--
-- Counts are compared as decimal strings, never as Lua numbers (doubles, exact only below
-- 2^53), so every limit up to 2^63 - 1 is exact. The clock is the server's TIME, one clock for
-- every instance. A spent counter expires a second after its window ends.

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)

-- a <= b for decimal strings without sign or leading zeros (byte by byte: Lua's own string
-- order follows the server's locale).
local function le(a, b)
  if #a ~= #b then
    return #a < #b
  end
  for j = 1, #a do
    local x, y = string.byte(a, j), string.byte(b, j)
    if x ~= y then
      return x < y
    end
  end
  return true
end

local keys, used, reply = {}, {}, {'0'}
local refused = 0
for i = 1, #KEYS do
  local window, cost, most = tonumber(ARGV[3 * i - 2]), ARGV[3 * i - 1], ARGV[3 * i]
  local index = math.floor(now_ms / window)
  local key = KEYS[i] .. ':' .. string.format('%.0f', index)
  local u = redis.call('GET', key) or '0'
  keys[i], used[i] = key, u
  if refused == 0 and cost ~= '0' and (most == '' or not le(u, most)) then
    refused = i
  end
  reply[2 * i] = u
  reply[2 * i + 1] = string.format('%.0f', (index + 1) * window * 1000 - now_us)
end

if refused == 0 then
  for i = 1, #KEYS do
    local window, cost = tonumber(ARGV[3 * i - 2]), ARGV[3 * i - 1]
    if cost ~= '0' then
      redis.call('INCRBY', keys[i], cost)
      if used[i] == '0' then
        local ends_in = (math.floor(now_ms / window) + 1) * window - now_ms
        redis.call('PEXPIRE', keys[i], ends_in + 1000)
      end
    end
  end
end

reply[1] = tostring(refused)
return reply
