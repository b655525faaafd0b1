-- A patient's entries for one prescription, written only if they are not older than what is
-- there: two projectors racing (a worker and a replay) cannot leave a stale entry.
-- KEYS: the patient's list. ARGV[1]: {version, entries = {{field, json}}}.
local list = KEYS[1]
local a = cjson.decode(ARGV[1])
for _, e in ipairs(a.entries) do
  local seen = tonumber(redis.call('HGET', list, 'v:' .. e[1]) or '0')
  if seen <= a.version then
    redis.call('HSET', list, e[1], e[2], 'v:' .. e[1], a.version)
  end
end
return cjson.encode({outcome = 'written'})
