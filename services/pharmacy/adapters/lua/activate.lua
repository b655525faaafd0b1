-- Settles a replacement that opened before its predecessor was settled: takes what the
-- predecessors dispensed from its lines, once, and lets it sell if nothing closed it since.
-- KEYS: ledger. ARGV[1]: {carried = {{line, quantity}}, t} (t: keep_live's). Returns 1 when this call settled it.
local ledger = KEYS[1]
local a = cjson.decode(ARGV[1])
if redis.call('HEXISTS', ledger, 'content') == 0 or redis.call('HGET', ledger, 'settled') == '1' then return 0 end
for _, l in ipairs(a.carried) do
  local prescribed = tonumber(redis.call('HGET', ledger, 'p:' .. l[1]) or '0')
  local carried = math.min(l[2], prescribed)
  redis.call('HSET', ledger, 'c:' .. l[1], carried)
  redis.call('HINCRBY', ledger, 'r:' .. l[1], -carried)
end
redis.call('HSET', ledger, 'settled', '1')
if redis.call('HGET', ledger, 'status') == 'awaiting' then redis.call('HSET', ledger, 'status', 'active') end
keep_live(ledger, a.t)
return 1
