-- Applies one tenant's part of a usage batch, at most once.
--
-- KEYS[1]   the batch's idempotency key
-- KEYS[2..] one key per operation
-- ARGV[1]   lifetime of the idempotency key (s)
-- then, per operation in KEYS order:
--   'c', n, ttl           INCRBY key n, EXPIRE key ttl   (a counter)
--   'h', field, n, ttl    HINCRBY key field n, EXPIRE    (per-agent counts)
--   's', member, ttl      SADD key member, EXPIRE        (active agents)
--
-- Returns 1 when applied, 0 when the key was applied before (nothing
-- changes). Every key shares one hash tag (the tenant's): one Cluster slot.
local ops = {c = 3, h = 4, s = 3}
local a = 2
for i = 2, #KEYS do
  local width = ops[ARGV[a]]
  if not width then
    return redis.error_reply('ERR sentryagent usage: unknown operation')
  end
  a = a + width
end
if a ~= #ARGV + 1 then
  return redis.error_reply('ERR sentryagent usage: arguments do not match keys')
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
a = 2
for i = 2, #KEYS do
  local op = ARGV[a]
  if op == 'c' then
    redis.call('INCRBY', KEYS[i], ARGV[a + 1])
    redis.call('EXPIRE', KEYS[i], ARGV[a + 2])
  elseif op == 'h' then
    redis.call('HINCRBY', KEYS[i], ARGV[a + 1], ARGV[a + 2])
    redis.call('EXPIRE', KEYS[i], ARGV[a + 3])
  else
    redis.call('SADD', KEYS[i], ARGV[a + 1])
    redis.call('EXPIRE', KEYS[i], ARGV[a + 2])
  end
  a = a + ops[op]
end
return 1
