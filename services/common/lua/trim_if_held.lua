-- Removes shipped entries from an outbox shard only if the caller still holds the shard's
-- lease: a relay that lost its lease (paused past it, partitioned) trims nothing; the new
-- holder ships and trims (consumers drop the duplicates by event id).
-- KEYS: the lease, the stream (one hash slot). ARGV: owner, then the entry ids.
-- Returns the number removed, or -1 when the lease is someone else's.
local lease, stream, owner = KEYS[1], KEYS[2], ARGV[1]
if redis.call('GET', lease) ~= owner then return -1 end
if #ARGV < 2 then return 0 end
return redis.call('XDEL', stream, unpack(ARGV, 2))
