-- Redis holds live state only (ARCHITECTURE.md, read path): a prescription's ledger, its sales
-- and the retry records of its sales expire together, `retention_ms` after the later of the end
-- of its validity window and the end of its last sale's reversal window (`last_sale_ms` +
-- `reversal_ms`). Closing it or selling its last unit does not bring that sooner: while the
-- window is open a redelivered or replayed PrescriptionIssued would open the ledger afresh, full
-- and active, if the closed or sold-out one were gone (an oversell). A ledger closed before its
-- issue arrived (a placeholder: no window known yet) lives `unopened_ms` after the closing.
-- The topics keep the history; `python -m services.pharmacy.rebuild` puts back what is live.
-- The ledger's `deps` field lists the keys that go with it (same hash tag, so same slot).
-- `t`: {retention_ms, reversal_ms, unopened_ms}. Returns the expiry set (Unix ms).
local function keep_live(ledger, t)
  local f = redis.call('HMGET', ledger, 'valid_end_ms', 'closed_ms', 'last_sale_ms', 'deps')
  local open_until = tonumber(f[1] or '')
  if not open_until then open_until = tonumber(f[2] or '0') + t.unopened_ms end
  local at = math.max(open_until, tonumber(f[3] or '0') + t.reversal_ms) + t.retention_ms
  redis.call('PEXPIREAT', ledger, at)
  for _, key in ipairs(f[4] and cjson.decode(f[4]) or {}) do redis.call('PEXPIREAT', key, at) end
  return at
end

local function add_deps(ledger, keys)
  local deps = redis.call('HGET', ledger, 'deps')
  deps = deps and cjson.decode(deps) or {}
  for _, key in ipairs(keys) do table.insert(deps, key) end
  redis.call('HSET', ledger, 'deps', cjson.encode(deps))
end

