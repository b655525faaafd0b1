-- Applies a planned sale, or nothing: re-checks the idempotency key and every state rule the
-- plan depends on (another pharmacy may have sold since the ledger was read), then takes the
-- quantities, keeps the receipt under the key, keeps the sale's record and appends its events.
-- Every check comes before the first write: Redis does not roll a script back.
-- KEYS: outbox, ledger, idempotency record, sale record.
-- ARGV[1]: {fingerprint, receipt, record, dispense_id, today, now_ms, lines = {{line, quantity}}, t}; then the events
-- (outbox prelude). The ledger's `sales` field lists the code's sales, oldest first.
-- Returns a JSON outcome: applied | duplicate | refused | missing.
local outbox, ledger, idem, sale = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local a = cjson.decode(ARGV[1])

local prior = redis.call('HGET', idem, 'fp')
if prior then
  return cjson.encode({outcome = 'duplicate', fingerprint = prior, receipt = redis.call('HGET', idem, 'receipt'),
                       remaining = redis.call('HGET', idem, 'remaining')})
end
local status = redis.call('HGET', ledger, 'status')
if not status or redis.call('HEXISTS', ledger, 'content') == 0 then return cjson.encode({outcome = 'missing'}) end
if status ~= 'active' then
  return cjson.encode({outcome = 'refused', rule = 'PRESCRIPTION_' .. string.upper(status),
                       successor = redis.call('HGET', ledger, 'successor') or ''})
end
if a.today > redis.call('HGET', ledger, 'valid_until') then
  return cjson.encode({outcome = 'refused', rule = 'VALIDITY_WINDOW_ENDED'})
end
for _, l in ipairs(a.lines) do
  local line, quantity = l[1], l[2]
  local remaining = redis.call('HGET', ledger, 'r:' .. line)
  if not remaining then return cjson.encode({outcome = 'refused', rule = 'LINE_UNKNOWN', line = line}) end
  local batch = redis.call('HGET', ledger, 'b:' .. line)
  if batch ~= '' then
    local sep = string.find(batch, '|', 1, true)
    if a.today < string.sub(batch, 1, sep - 1) or a.today > string.sub(batch, sep + 1) then
      return cjson.encode({outcome = 'refused', rule = 'OUTSIDE_BATCH_DATES', line = line})
    end
  end
  if quantity > tonumber(remaining) then
    return cjson.encode({outcome = 'refused', rule = 'QUANTITY_EXCEEDS_REMAINING', line = line,
                         remaining = tonumber(remaining)})
  end
end

for _, l in ipairs(a.lines) do
  redis.call('HINCRBY', ledger, 'r:' .. l[1], -l[2])
end
local after = {}
local fields = redis.call('HGETALL', ledger)
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'r:' then after[string.sub(fields[i], 3)] = tonumber(fields[i + 1]) end
end
local remaining = cjson.encode(after)
redis.call('HSET', sale, 'doc', a.record)
redis.call('HSET', ledger, 'sales', (redis.call('HGET', ledger, 'sales') or '') .. a.dispense_id .. ' ')
redis.call('HSET', idem, 'fp', a.fingerprint, 'receipt', a.receipt, 'remaining', remaining)
redis.call('HSET', ledger, 'last_sale_ms', a.now_ms)
add_deps(ledger, {sale, idem})
keep_live(ledger, a.t)
outbox_append(outbox)
return cjson.encode({outcome = 'applied', remaining = remaining})
