-- Every limit of one request in one call, all-or-nothing: the same
-- arithmetic as sentryagent_core::ratelimit::gcra_all (and gcra.lua), in
-- integer microseconds on the Redis server's clock (TIME).
--
-- KEYS[i]          the i-th key's theoretical arrival time (TAT), Unix µs
-- ARGV[3i-2]       its T, the emission interval (µs, >= 1)
-- ARGV[3i-1]       its D = burst * T (µs, <= 2^51)
-- ARGV[3i]         its cost (0 = peek; <= burst)
-- ARGV[3n+1]       optional: `now` instead of TIME (tests of the arithmetic)
--
-- Checks run in order; a key given twice sees its first charge. If a check
-- with a cost refuses, nothing is written and every other decision is a
-- peek of its key. Otherwise every new TAT is written (a key expires at its
-- TAT, rounded up to a millisecond).
--
-- Returns {refused, then per key: allowed (0/1), remaining, retry_after
-- (µs), reset_after (µs)}, where `refused` is the 1-based index of the
-- refusing check, 0 if the request is admitted.
--
-- Lua numbers are doubles, exact for integers below 2^53; see gcra.lua for
-- why every value stays below that.
local n = #KEYS
if #ARGV ~= 3 * n and #ARGV ~= 3 * n + 1 then
  return redis.error_reply('ERR sentryagent gcra_all: wrong number of arguments')
end
local now
if #ARGV == 3 * n + 1 then
  now = tonumber(ARGV[3 * n + 1])
else
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end
if not now or now < 0 or now > 4503599627370496 then
  return redis.error_reply('ERR sentryagent gcra_all: clock out of range')
end

local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

-- One GCRA step: allowed, remaining, retry_after, reset_after, and the TAT
-- to store with its lifetime (nil: leave the key).
local function step(tat, t, d, cost)
  local ahead = 0
  if tat then
    ahead = tat - now
  end
  local backlog = ahead
  if backlog < 0 then
    backlog = 0
  elseif backlog > d then
    backlog = d
  end
  local clamp, clamp_ttl = nil, nil
  if ahead > d then
    clamp, clamp_ttl = now + d, d
  end
  local available = idiv(d - backlog, t)
  if cost == 0 then
    if available > 0 then
      return 1, available, 0, backlog, clamp, clamp_ttl
    end
    return 0, available, backlog + t - d, backlog, clamp, clamp_ttl
  end
  local after = backlog + cost * t
  if cost > available then
    return 0, available, after - d, backlog, clamp, clamp_ttl
  end
  return 1, available - cost, 0, after, now + after, after
end

local t, d, cost, stored = {}, {}, {}, {}
for i = 1, n do
  t[i] = tonumber(ARGV[3 * i - 2])
  d[i] = tonumber(ARGV[3 * i - 1])
  cost[i] = tonumber(ARGV[3 * i])
  if not (t[i] and d[i] and cost[i]) or t[i] < 1 or d[i] < t[i]
      or d[i] > 2251799813685248 or cost[i] < 0 then
    return redis.error_reply('ERR sentryagent gcra_all: argument out of range')
  end
  local v = redis.call('GET', KEYS[i])
  if v then
    stored[i] = tonumber(v)
    if not stored[i] then
      return redis.error_reply('ERR sentryagent gcra_all: a key does not hold a TAT')
    end
  end
end

local out = {0}
local current, writes, ttls = {}, {}, {}
for i = 1, n do
  local tat = stored[i]
  for j = i - 1, 1, -1 do
    if KEYS[j] == KEYS[i] then
      tat = current[j]
      break
    end
  end
  local allowed, remaining, retry, reset, new, ttl = step(tat, t[i], d[i], cost[i])
  if cost[i] > 0 and allowed == 0 then
    -- Refused: nothing is written; the others are peeks.
    out = {i}
    for j = 1, n do
      if j == i then
        out[#out + 1] = allowed
        out[#out + 1] = remaining
        out[#out + 1] = retry
        out[#out + 1] = reset
      else
        local a, r, ra, rs = step(stored[j], t[j], d[j], 0)
        out[#out + 1] = a
        out[#out + 1] = r
        out[#out + 1] = ra
        out[#out + 1] = rs
      end
    end
    return out
  end
  out[#out + 1] = allowed
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = reset
  writes[i], ttls[i] = new, ttl
  if new then
    current[i] = new
  else
    current[i] = tat
  end
end
for i = 1, n do
  if writes[i] then
    redis.call('SET', KEYS[i], string.format('%.0f', writes[i]), 'PX', idiv(ttls[i] + 999, 1000))
  end
end
return out
