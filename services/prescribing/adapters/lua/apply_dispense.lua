-- Projection of a dispense or its reversal: applied once per event id, atomically with the
-- change, so a redelivered event changes nothing.
-- KEYS: prescription, applied-event set. ARGV[1]: {event_id, sign, lines = {{line, quantity}}}.
-- Outcomes: applied | seen | missing.
local rx, applied = KEYS[1], KEYS[2]
local a = cjson.decode(ARGV[1])
if redis.call('EXISTS', rx) == 0 then return cjson.encode({outcome = 'missing'}) end
if redis.call('SADD', applied, a.event_id) == 0 then return cjson.encode({outcome = 'seen'}) end
for _, l in ipairs(a.lines) do
  redis.call('HINCRBY', rx, 'd:' .. l[1], a.sign * l[2])
end
local prescribed = cjson.decode(redis.call('HGET', rx, 'prescribed'))
local complete = '1'
for line, qty in pairs(prescribed) do
  if tonumber(redis.call('HGET', rx, 'd:' .. line) or '0') < qty then complete = '0' end
end
redis.call('HSET', rx, 'completed', complete)
redis.call('HINCRBY', rx, 'v', 1)
local live_until = redis.call('PEXPIRETIME', rx)    -- the events applied go with their prescription
if live_until > 0 then redis.call('PEXPIREAT', applied, live_until) end
return cjson.encode({outcome = 'applied'})
