-- align-ratelimit's calendar quota in Redis (RedisQuota): one atomic run per check, the same
-- decisions as the in-memory Quota.
--
-- KEYS[1]  hash: p (the period counted: UTC day number, or year * 12 + month - 1), u (units
--          used in it)
-- ARGV     limit, period kind ('d' day, 'm' month), cost, Unix seconds and nanoseconds of
--          now (both empty: the server's TIME, one clock for every instance), dry ("1":
--          decide, write nothing)
-- Returns  {admitted (1/0), used, reset (ns), retry (ns; -1 when admitted)}
--
-- The key expires an hour after its period ends (by then the next period has started and
-- counts from zero). Calendar arithmetic: H. Hinnant's days-from-civil algorithms, as in Rust.

local limit, kind, cost = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local dry = ARGV[6] == '1'
local sec, nsec
if ARGV[4] == '' then
  local t = redis.call('TIME')
  sec, nsec = tonumber(t[1]), tonumber(t[2]) * 1000
else
  sec, nsec = tonumber(ARGV[4]), tonumber(ARGV[5])
end

local floor = math.floor
local DAY = 86400

local function civil_from_days(days)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local month = mp - 9
  if mp < 10 then
    month = mp + 3
  end
  local year = yoe + era * 400
  if month <= 2 then
    year = year + 1
  end
  return year, month
end

local function days_from_civil(year, month)
  if month <= 2 then
    year = year - 1
  end
  local era = floor(year / 400)
  local yoe = year - era * 400
  local mp = (month + 9) % 12
  local doy = floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The period containing now, and the second at which it ends.
local days = floor(sec / DAY)
local period, ends_at
if kind == 'd' then
  period, ends_at = days, (days + 1) * DAY
else
  local year, month = civil_from_days(days)
  local next_year, next_month = year, month + 1
  if month == 12 then
    next_year, next_month = year + 1, 1
  end
  period, ends_at = year * 12 + month - 1, days_from_civil(next_year, next_month) * DAY
end

local h = redis.call('HMGET', KEYS[1], 'p', 'u')
local counted, used = tonumber(h[1]), tonumber(h[2]) or 0
if counted == nil or period > counted then
  counted, used = period, 0
end

local admitted = used + cost <= limit
if admitted then
  used = used + cost
end
-- Small enough (at most a month of nanoseconds) to be exact in a double.
local ends_in = (ends_at - sec) * 1e9 - nsec

if admitted and cost > 0 and not dry then
  redis.call('HSET', KEYS[1], 'p', string.format('%.0f', counted), 'u', string.format('%.0f', used))
  redis.call('PEXPIRE', KEYS[1], floor(ends_in / 1e6) + 3600 * 1000)
end

local reset = ends_in
if used == 0 then
  reset = 0
end
local flag, retry = 1, -1
if not admitted then
  flag, retry = 0, ends_in
end
return {flag, used, reset, retry}
