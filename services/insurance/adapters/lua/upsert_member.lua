-- Writes a member and its identifiers, refusing a citizen ID that belongs to someone else.
-- Card periods merge: the same card code and start date is the same period.
-- KEYS: member, citizen-id index, then one index key per card. ARGV: member id, member (JSON).
-- Returns a JSON outcome: changed | same | conflict (with the owner of the citizen id).
local member_key, citizen_key = KEYS[1], KEYS[2]
local member_id, member_json = ARGV[1], ARGV[2]
local owner = redis.call('GET', citizen_key)
if owner and owner ~= member_id then return cjson.encode({outcome = 'conflict', owner = owner}) end
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
local changed = encoded ~= current
redis.call('SET', member_key, encoded)
redis.call('SET', citizen_key, member_id)
for i = 3, #KEYS do redis.call('SET', KEYS[i], member_id) end
return cjson.encode({outcome = changed and 'changed' or 'same'})
