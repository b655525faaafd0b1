-- The pharmacies' final count under a closed code, on the prescription's record if it is still
-- there: checked and written in one step, so that a record expiring in between is not written
-- back without its expiry (it would then be kept forever).
-- KEYS[1]: the record. ARGV: field, value, field, value... Returns 1 when written, 0 when gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
