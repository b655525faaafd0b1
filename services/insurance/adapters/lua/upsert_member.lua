-- Writes a member, merging its card periods: the same card code and start date is the same period.
-- KEYS: the member. ARGV: member (JSON). Its identifiers' index keys live in other hash slots
-- (Redis Cluster): the store claims them before this script runs (RedisInsuranceStore.upsert_member).
-- Returns changed | same.
local member_key, member_json = KEYS[1], ARGV[1]
local current = redis.call('GET', member_key)
local member = cjson.decode(member_json)
if current then
  local old = cjson.decode(current)
  local seen = {}
  for _, c in ipairs(member.cards) do seen[c.card_code .. '|' .. c.valid_from] = true end
  for _, c in ipairs(old.cards) do
    if not seen[c.card_code .. '|' .. c.valid_from] then table.insert(member.cards, c) end
  end
end
local encoded = cjson.encode(member)
if encoded == current then return 'same' end
redis.call('SET', member_key, encoded)
return 'changed'
