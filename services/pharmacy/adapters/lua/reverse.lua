-- Gives a sale's quantities back to the ledger once, and appends the reversal's events.
-- KEYS: outbox, ledger, sale record. ARGV[1]: {reversed_at, lines = {{line, quantity}}, t}; then the events.
-- Returns a JSON outcome: reversed | already | missing.
local outbox, ledger, sale = KEYS[1], KEYS[2], KEYS[3]
local a = cjson.decode(ARGV[1])
if redis.call('HEXISTS', sale, 'doc') == 0 then return cjson.encode({outcome = 'missing'}) end
if redis.call('HEXISTS', sale, 'reversed_at') == 1 then return cjson.encode({outcome = 'already'}) end
for _, l in ipairs(a.lines) do
  redis.call('HINCRBY', ledger, 'r:' .. l[1], l[2])
end
redis.call('HSET', sale, 'reversed_at', a.reversed_at)
keep_live(ledger, a.t)
outbox_append(outbox)
return cjson.encode({outcome = 'reversed'})
