-- Shared by the command scripts (prepended to each). A reply is one JSON object with an
-- `outcome`; a new prescription's arguments are ARGV[1] (JSON) and ARGV[2] (the document).
local a = cjson.decode(ARGV[1])
local function reply(t) return cjson.encode(t) end
local function replayed(req)
  local prior = redis.call('HGET', req, 'fp')
  if prior then return reply({outcome = 'duplicate', fingerprint = prior, response = redis.call('HGET', req, 'response')}) end
end
local function refusal(rx)
  local status = redis.call('HGET', rx, 'status')
  if not status then return reply({outcome = 'missing'}) end
  if status ~= 'active' then return reply({outcome = 'state', status = status}) end
  if redis.call('HGET', rx, 'completed') == '1' then return reply({outcome = 'state', status = 'completed'}) end
end
local function create(rx, req)
  redis.call('HSET', rx, 'content', ARGV[2], 'status', 'active', 'valid_until', a.valid_until,
             'patient_key', a.patient_key, 'prescribed', a.prescribed, 'v', 1)
  redis.call('HSET', req, 'fp', a.fingerprint, 'response', a.response)
  -- live state only: both go a retention after the prescription can no longer be dispensed
  -- or reversed (services/kernel/retention.py); a replaced one keeps its own time
  redis.call('PEXPIREAT', rx, a.live_until_ms)
  redis.call('PEXPIREAT', req, a.live_until_ms)
end
