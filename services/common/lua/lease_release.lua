-- Gives a lease back, only if the caller still holds it. KEYS: the lease. ARGV: owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
