-- KEYS: outbox, prescription, request record. ARGV[1]: {fingerprint, response, valid_until,
-- patient_key, prescribed, live_until_ms}; ARGV[2]: the signed prescription; then the events.
-- Outcomes: done | duplicate | collision (the code is taken: draw another).
local outbox, rx, req = KEYS[1], KEYS[2], KEYS[3]
local earlier = replayed(req)
if earlier then return earlier end
if redis.call('EXISTS', rx) == 1 then return reply({outcome = 'collision'}) end
create(rx, req)
outbox_append(outbox)
return reply({outcome = 'done'})
