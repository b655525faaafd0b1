-- A prescription's ledger, created once from its PrescriptionIssued event. A cancel or a
-- replace that overtook the issue left a placeholder: it is filled in and keeps its status.
-- KEYS: ledger. ARGV[1]: {valid_until, lines = {{line, quantity, batch}}}; ARGV[2]: the signed prescription.
local ledger = KEYS[1]
local a = cjson.decode(ARGV[1])
local content = ARGV[2]
if redis.call('HEXISTS', ledger, 'content') == 1 then return 0 end
local status = redis.call('HGET', ledger, 'status') or 'active'
redis.call('HSET', ledger, 'content', content, 'status', status, 'valid_until', a.valid_until, 'lines', #a.lines)
for _, l in ipairs(a.lines) do
  redis.call('HSET', ledger, 'p:' .. l[1], l[2], 'r:' .. l[1], l[2], 'b:' .. l[1], l[3])
end
redis.call('HDEL', ledger, 'pending')
return 1
