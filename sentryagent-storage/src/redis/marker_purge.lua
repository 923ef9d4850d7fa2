-- Removes up to ARGV[2] markers expired at ARGV[1] (Unix microseconds),
-- read from the expiry index KEYS[1]; returns how many. A marker put again
-- since has a later score and is not in range. Marker keys share the
-- index's hash tag (one slot).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, key in ipairs(due) do
  local held = redis.call('GET', key)
  if held and tonumber(held) <= tonumber(ARGV[1]) then
    redis.call('DEL', key)
  end
  redis.call('ZREM', KEYS[1], key)
end
return #due
