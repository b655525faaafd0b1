-- Cancelled and replaced are final; they win whatever order the events come in.
-- KEYS: ledger. ARGV[1]: the final status.
local ledger = KEYS[1]
if redis.call('EXISTS', ledger) == 0 then
  redis.call('HSET', ledger, 'status', ARGV[1], 'pending', '1')
  return 0
end
redis.call('HSET', ledger, 'status', ARGV[1])
return 1
