-- One GCRA step, the same arithmetic as sentryagent_core::ratelimit::gcra,
-- in integer microseconds on the Redis server's clock (TIME), so that every
-- node sharing this Redis agrees.
--
-- KEYS[1]  the key's theoretical arrival time (TAT), Unix microseconds
-- ARGV[1]  T, the emission interval (µs, >= 1)
-- ARGV[2]  D = burst * T (µs, <= 2^51)
-- ARGV[3]  cost (0 = peek; <= burst)
-- ARGV[4]  optional: `now` instead of TIME (tests of the arithmetic)
--
-- Returns {allowed (0/1), remaining, retry_after (µs), reset_after (µs)}.
--
-- Lua numbers are doubles, exact for integers below 2^53. Every value here
-- stays below that: D <= 2^51 (checked by the caller), now <= 2^52 (checked
-- below; the year 2112), a stored TAT <= now + D, and sums of two such.
local t = tonumber(ARGV[1])
local d = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
if not (t and d and cost and now) or t < 1 or d < t or d > 2251799813685248
    or cost < 0 or now < 0 or now > 4503599627370496 then
  return redis.error_reply('ERR sentryagent gcra: argument or clock out of range')
end

-- floor(a / b) for 0 <= a and 1 <= b, with a + b < 2^53: the quotient of
-- two doubles, corrected by one step either way.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- Stores a TAT; the key expires at the TAT (rounded up to a millisecond):
-- a key past its TAT is exactly a key without state.
local function store(tat, ttl)
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', idiv(ttl + 999, 1000))
end

local ahead = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  ahead = tonumber(stored)
  if not ahead then
    return redis.error_reply('ERR sentryagent gcra: the key does not hold a TAT')
  end
  ahead = ahead - now
end
-- the backlog, clamped to [0, D]
local backlog = ahead
if backlog < 0 then
  backlog = 0
elseif backlog > d then
  backlog = d
end
-- a TAT more than D ahead is stored back clamped, whatever the request
local clamped = ahead > d
-- unit requests admissible now
local available = idiv(d - backlog, t)

if cost == 0 then
  if clamped then
    store(now + d, d)
  end
  if available > 0 then
    return {1, available, 0, backlog}
  end
  return {0, available, backlog + t - d, backlog}
end

local after = backlog + cost * t
if cost > available then
  if clamped then
    store(now + d, d)
  end
  return {0, available, after - d, backlog}
end
store(now + after, after)
return {1, available - cost, 0, after}
