-- KEYS: outbox, old prescription, new prescription, request record. ARGV[1]: as issue, plus
-- replacement (the new code); ARGV[2]: the signed replacement; then the events.
-- Outcomes: done | duplicate | missing | state | collision.
local outbox, old, rx, req = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local earlier = replayed(req) or refusal(old)
if earlier then return earlier end
if redis.call('EXISTS', rx) == 1 then return reply({outcome = 'collision'}) end
redis.call('HSET', old, 'status', 'replaced', 'replaced_by', a.replacement)
redis.call('HINCRBY', old, 'v', 1)
create(rx, req)
outbox_append(outbox)
return reply({outcome = 'done'})
