-- Puts a one-time marker unless a live one is there.
-- KEYS[1] the marker, KEYS[2] the expiry index (sorted set).
-- ARGV[1] expiry (Unix microseconds), ARGV[2] now (same clock),
-- ARGV[3] Redis lifetime in milliseconds. Returns 1 if stored, 0 if a
-- marker live at now was there.
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) > tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], KEYS[1])
return 1
