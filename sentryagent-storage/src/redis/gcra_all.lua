-- Every limit of one request in one call, all-or-nothing, for one or
-- more requests (a node coalesces concurrent requests into one call): the
-- same arithmetic as sentryagent_core::ratelimit::gcra_all (and gcra.lua),
-- in integer microseconds on the Redis server's clock (TIME).
--
-- ARGV[1]          R, the number of requests
-- then per request: n, its number of checks, and per check three values:
--                  T, the emission interval (µs, >= 1); D = burst * T (µs,
--                  <= 2^51); the cost (0 = peek; <= burst)
-- last, optional:  `now` instead of TIME (tests of the arithmetic)
-- KEYS             every check's key (its theoretical arrival time, TAT, in
--                  Unix µs), request after request
--
-- Within a request, checks run in order and a key given twice sees its
-- first charge. If a check with a cost refuses, the request writes nothing
-- and its other decisions are peeks of their keys. Otherwise every new TAT
-- is written before the next request runs (a key expires at its TAT,
-- rounded up to a millisecond).
--
-- Returns, per request, {refused, then per check: allowed (0/1), remaining,
-- retry_after (µs), reset_after (µs)}, all flat, where `refused` is the
-- 1-based index of the refusing check, 0 if the request is admitted.
--
-- Lua numbers are doubles, exact for integers below 2^53; see gcra.lua for
-- why every value stays below that.
local requests = tonumber(ARGV[1])
if not requests or requests < 0 then
  return redis.error_reply('ERR sentryagent gcra_all: bad request count')
end
-- Where each request's arguments start, and the total of keys.
local starts, counts, at, nkeys = {}, {}, 2, 0
for r = 1, requests do
  local n = tonumber(ARGV[at])
  if not n or n < 0 then
    return redis.error_reply('ERR sentryagent gcra_all: bad check count')
  end
  starts[r], counts[r] = at + 1, n
  at = at + 1 + 3 * n
  nkeys = nkeys + n
end
if nkeys ~= #KEYS or (#ARGV ~= at - 1 and #ARGV ~= at) then
  return redis.error_reply('ERR sentryagent gcra_all: wrong number of arguments')
end
local now
if #ARGV == at then
  now = tonumber(ARGV[at])
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

local out = {}

-- One request: n checks, keys from KEYS[k0 + 1], arguments from ARGV[a0].
-- Appends its reply to `out`; returns an error reply or nil.
local function request(k0, a0, n)
  local key, t, d, cost, stored = {}, {}, {}, {}, {}
  for i = 1, n do
    key[i] = KEYS[k0 + i]
    t[i] = tonumber(ARGV[a0 + 3 * i - 3])
    d[i] = tonumber(ARGV[a0 + 3 * i - 2])
    cost[i] = tonumber(ARGV[a0 + 3 * i - 1])
    if not (t[i] and d[i] and cost[i]) or t[i] < 1 or d[i] < t[i]
        or d[i] > 2251799813685248 or cost[i] < 0 then
      return redis.error_reply('ERR sentryagent gcra_all: argument out of range')
    end
    local v = redis.call('GET', key[i])
    if v then
      stored[i] = tonumber(v)
      if not stored[i] then
        return redis.error_reply('ERR sentryagent gcra_all: a key does not hold a TAT')
      end
    end
  end
  local reply = {0}
  local current, writes, ttls = {}, {}, {}
  for i = 1, n do
    local tat = stored[i]
    for j = i - 1, 1, -1 do
      if key[j] == key[i] then
        tat = current[j]
        break
      end
    end
    local allowed, remaining, retry, reset, new, ttl = step(tat, t[i], d[i], cost[i])
    if cost[i] > 0 and allowed == 0 then
      -- Refused: nothing is written; the others are peeks.
      out[#out + 1] = i
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
      return nil
    end
    reply[#reply + 1] = allowed
    reply[#reply + 1] = remaining
    reply[#reply + 1] = retry
    reply[#reply + 1] = reset
    writes[i], ttls[i] = new, ttl
    if new then
      current[i] = new
    else
      current[i] = tat
    end
  end
  for i = 1, n do
    if writes[i] then
      redis.call('SET', key[i], string.format('%.0f', writes[i]), 'PX', idiv(ttls[i] + 999, 1000))
    end
  end
  for _, v in ipairs(reply) do
    out[#out + 1] = v
  end
  return nil
end

local k0 = 0
for r = 1, requests do
  local err = request(k0, starts[r], counts[r])
  if err then
    return err
  end
  k0 = k0 + counts[r]
end
return out
