-- Appends a closed ledger's DispensingClosed event once.
-- KEYS: outbox, ledger. ARGV: the event (outbox prelude). Returns 1 when appended now.
local outbox, ledger = KEYS[1], KEYS[2]
if redis.call('HSETNX', ledger, 'announced', '1') == 0 then return 0 end
outbox_append(outbox)
return 1
