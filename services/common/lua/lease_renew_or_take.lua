-- A relay's lease on an outbox shard: renewed by its holder, taken when free.
-- KEYS: the lease. ARGV: owner, lease in milliseconds. Returns 1 when the caller holds it.
local lease, owner, ms = KEYS[1], ARGV[1], ARGV[2]
local holder = redis.call('GET', lease)
if holder == owner then
  redis.call('PEXPIRE', lease, ms)
  return 1
elseif not holder then
  redis.call('SET', lease, owner, 'PX', ms)
  return 1
end
return 0
