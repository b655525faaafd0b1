-- A patient's entries for one prescription, written only if they are not older than what is
-- there: two projectors racing (a worker and a replay) cannot leave a stale entry.
-- Live state only: each entry has its own end (`u:<field>`, Unix ms: a retention after its
-- prescription can no longer be dispensed or reversed, or after its course ends, whichever is
-- later); entries past it are dropped here, and the list expires with its last entry.
-- KEYS: the patient's list. ARGV[1]: {version, now_ms, entries = {{field, json, until_ms}}}.
local list = KEYS[1]
local a = cjson.decode(ARGV[1])
for _, e in ipairs(a.entries) do
  local seen = tonumber(redis.call('HGET', list, 'v:' .. e[1]) or '0')
  if seen <= a.version then
    redis.call('HSET', list, e[1], e[2], 'v:' .. e[1], a.version, 'u:' .. e[1], e[3])
  end
end
local now_ms = a.now_ms
local last = 0
local fields = redis.call('HGETALL', list)
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'u:' then
    local ends = tonumber(fields[i + 1])
    if ends <= now_ms then
      local entry = string.sub(fields[i], 3)
      redis.call('HDEL', list, entry, 'v:' .. entry, fields[i])
    elseif ends > last then
      last = ends
    end
  end
end
if last > 0 then redis.call('PEXPIREAT', list, last) else redis.call('DEL', list) end
return cjson.encode({outcome = 'written'})
