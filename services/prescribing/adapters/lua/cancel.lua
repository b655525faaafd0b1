-- KEYS: outbox, prescription. ARGV[1]: {reason}; then the events.
-- Outcomes: done | already (cancelled before: nothing appended) | missing | state.
local outbox, rx = KEYS[1], KEYS[2]
if redis.call('HGET', rx, 'status') == 'cancelled' then return reply({outcome = 'already'}) end
local refused = refusal(rx)
if refused then return refused end
redis.call('HSET', rx, 'status', 'cancelled', 'cancel_reason', a.reason)
redis.call('HINCRBY', rx, 'v', 1)
outbox_append(outbox)
return reply({outcome = 'done'})
