-- A prescription's ledger, created once from its PrescriptionIssued event. A cancel or a
-- replace that overtook the issue left a placeholder: it is filled in and keeps its status.
-- A replacement's lines start with what its predecessors dispensed (`carried`) already taken;
-- one whose predecessor is not settled yet opens 'awaiting' (nothing sells) until activated.
-- KEYS: ledger. ARGV[1]: {valid_until, valid_end_ms, settled, lines = {{line, quantity, batch, carried}}, t}
-- (t: keep_live's);
-- ARGV[2]: the signed prescription. Returns 1 when this call created it.
local ledger = KEYS[1]
local a = cjson.decode(ARGV[1])
local content = ARGV[2]
if redis.call('HEXISTS', ledger, 'content') == 1 then keep_live(ledger, a.t) return 0 end
local status = redis.call('HGET', ledger, 'status') or (a.settled and 'active' or 'awaiting')
if status == 'active' and not a.settled then status = 'awaiting' end
redis.call('HSET', ledger, 'content', content, 'status', status, 'valid_until', a.valid_until, 'lines', #a.lines,
           'settled', a.settled and '1' or '0', 'valid_end_ms', a.valid_end_ms)
for _, l in ipairs(a.lines) do
  local carried = math.min(l[4], l[2])
  redis.call('HSET', ledger, 'p:' .. l[1], l[2], 'r:' .. l[1], l[2] - carried, 'c:' .. l[1], carried, 'b:' .. l[1], l[3])
end
redis.call('HDEL', ledger, 'pending')
keep_live(ledger, a.t)
return 1
