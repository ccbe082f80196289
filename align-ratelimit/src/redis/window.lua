-- align-ratelimit's sliding window in Redis (RedisSlidingWindow): one atomic run per check.
--
-- KEYS[1]  hash: base (Unix seconds that all times are relative to), latest (the key's clock:
--          the latest time seen, ns after base), start (when the newest bucket opened), total
--          (units counted)
-- KEYS[2]  list of buckets, oldest first, each "t:n": n units whose latest admission was at t
-- ARGV     limit, window (ns), bucket width (ns), cost, Unix seconds and nanoseconds of now
--          (both empty: the server's TIME, one clock for every instance), dry ("1": decide,
--          write nothing), rebase threshold (ns)
-- Returns  {admitted (1/0), remaining, reset (ns), retry (ns; -1 when admitted)}
--
-- A bucket's units count until its latest admission has left the window, so no interval of
-- one window ever holds more than the limit; a request counts at most one bucket width too
-- long. Lua numbers are doubles, exact below 2^53: times are kept relative to base, which
-- moves forward once they pass the rebase threshold (2^52 ns, about 52 days).

local limit, window, width = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local dry = ARGV[7] == '1'
local rebase_after = tonumber(ARGV[8])
local sec, nsec
if ARGV[5] == '' then
  local t = redis.call('TIME')
  sec, nsec = tonumber(t[1]), tonumber(t[2]) * 1000
else
  sec, nsec = tonumber(ARGV[5]), tonumber(ARGV[6])
end

local function num(x)
  return string.format('%.0f', x)
end

local function parse(b)
  local sep = string.find(b, ':', 1, true)
  return tonumber(string.sub(b, 1, sep - 1)), tonumber(string.sub(b, sep + 1))
end

local h = redis.call('HMGET', KEYS[1], 'base', 'latest', 'start', 'total')
local base, latest = tonumber(h[1]), tonumber(h[2])
local start, total = tonumber(h[3]) or 0, tonumber(h[4]) or 0
local fresh = base == nil or latest == nil
if fresh then
  base, latest, start, total = sec, 0, 0, 0
end

-- The key's clock never goes back: a late reading counts from the latest one.
local now = (sec - base) * 1e9 + nsec
if now < latest then
  now = latest
end

-- Buckets whose latest admission has left the window no longer count.
local first, oldest = 0, nil
while total > 0 do
  local b = redis.call('LINDEX', KEYS[2], first)
  if not b then
    total = 0
    break
  end
  local t, n = parse(b)
  if t + window > now then
    oldest = t
    break
  end
  total = total - n
  first = first + 1
end
if total <= 0 then
  total, oldest = 0, nil
end

local admitted = total + cost <= limit
local retry = -1
if not admitted then
  -- The request fits once the oldest buckets holding `excess` units have left.
  local excess, freed, i = total + cost - limit, 0, first
  while freed < excess do
    local chunk = redis.call('LRANGE', KEYS[2], i, i + 15)
    if #chunk == 0 then
      break
    end
    for _, b in ipairs(chunk) do
      local t, n = parse(b)
      freed = freed + n
      if freed >= excess then
        retry = t + window - now
        break
      end
    end
    i = i + #chunk
  end
end

local counted = admitted and cost > 0
local coalesce = counted and total > 0 and now < start + width
local was_total = total
if counted then
  total = total + cost
  -- A new bucket that is the only one, or the only bucket taking this admission, is the
  -- oldest now and leaves a window from now.
  if oldest == nil or (coalesce and redis.call('LLEN', KEYS[2]) - first == 1) then
    oldest = now
  end
end
local reset = 0
if total > 0 then
  reset = oldest + window - now
end

if not dry then
  if total == 0 then
    -- Nothing counted: the same as a key never seen, so forget it.
    if not fresh then
      redis.call('DEL', KEYS[1], KEYS[2])
    end
  else
    if first > 0 then
      redis.call('LTRIM', KEYS[2], first, -1)
    end
    if coalesce then
      local _, n = parse(redis.call('LINDEX', KEYS[2], -1))
      redis.call('LSET', KEYS[2], -1, num(now) .. ':' .. num(n + cost))
    elseif counted then
      if was_total == 0 then
        redis.call('DEL', KEYS[2])
      end
      redis.call('RPUSH', KEYS[2], num(now) .. ':' .. num(cost))
      start = now
    end
    local ttl = nil
    if counted then
      ttl = window
    end
    if now > rebase_after then
      -- Move base forward by whole seconds, keeping every live time positive.
      local shift = math.floor(now / 1e9) - math.ceil(window / 1e9) - 2
      if shift > 0 then
        local d = shift * 1e9
        local items = redis.call('LRANGE', KEYS[2], 0, -1)
        redis.call('DEL', KEYS[2])
        for _, b in ipairs(items) do
          local t, n = parse(b)
          redis.call('RPUSH', KEYS[2], num(t - d) .. ':' .. num(n))
        end
        local t = parse(items[#items])
        ttl = t + window - now
        base, now, start = base + shift, now - d, start - d
      end
    end
    if counted or first > 0 or now ~= latest or ttl ~= nil then
      redis.call('HSET', KEYS[1], 'base', num(base), 'latest', num(now), 'start', num(start),
        'total', num(total))
    end
    if ttl ~= nil then
      -- Both keys live until the newest admission has left the window.
      local ms = math.floor(ttl / 1e6) + 1
      redis.call('PEXPIRE', KEYS[1], ms)
      redis.call('PEXPIRE', KEYS[2], ms)
    end
  end
end

local flag = 0
if admitted then
  flag = 1
end
return {flag, limit - total, reset, retry}
