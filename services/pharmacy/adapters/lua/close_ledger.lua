-- Cancelled and replaced are final; the first final status (and successor) wins, whatever
-- order the events come in. No sale under the code is accepted after this script.
-- KEYS: ledger. ARGV[1]: {status, successor, closed_ms, t} (t: keep_live's).
-- Returns JSON: {outcome = closed | unsettled, status, successor, dispensed = {line = quantity}}.
-- Unsettled: the ledger was never opened (a placeholder is left) or still awaits what its own
-- predecessor dispensed, so what it dispensed in all is not known yet.
local ledger = KEYS[1]
local a = cjson.decode(ARGV[1])
local status = redis.call('HGET', ledger, 'status')
if not status or status == 'active' or status == 'awaiting' then
  redis.call('HSET', ledger, 'status', a.status, 'successor', a.successor or '', 'closed_ms', a.closed_ms)
  if redis.call('HEXISTS', ledger, 'content') == 0 then redis.call('HSET', ledger, 'pending', '1') end
end
status = redis.call('HGET', ledger, 'status')
keep_live(ledger, a.t)
local successor = redis.call('HGET', ledger, 'successor') or ''
if redis.call('HEXISTS', ledger, 'content') == 0 or redis.call('HGET', ledger, 'settled') ~= '1' then
  return cjson.encode({outcome = 'unsettled', status = status, successor = successor})
end
local dispensed = {}
local fields = redis.call('HGETALL', ledger)
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'p:' then
    local line = string.sub(name, 3)
    dispensed[line] = tonumber(fields[i + 1]) - tonumber(redis.call('HGET', ledger, 'r:' .. line))
  end
end
return cjson.encode({outcome = 'closed', status = status, successor = successor, dispensed = dispensed})
