-- Applies one batch's events to the global counters, exactly once per source
-- partition.
-- KEYS: 1 global hash, 2 set of user ids (hash tag {g}).
-- ARGV: per event: partition, offset, kind, value, ts, user.
-- Returns the number of events applied.
local h, us = KEYS[1], KEYS[2]
local function fmt(x) return string.format('%.17g', x) end

local marks, dirty = {}, {}
local applied = 0
local users, have = {}, {}
local cur = redis.call('HMGET', h, 'n', 'ne', 'es', 'l')
local n, ne = tonumber(cur[1] or '0'), tonumber(cur[2] or '0')
local es, l = tonumber(cur[3] or '0'), tonumber(cur[4] or '0')
for i = 1, #ARGV, 6 do
  local part, off = ARGV[i], tonumber(ARGV[i + 1])
  local ok = true
  if part ~= '' then
    local m = marks[part]
    if m == nil then
      m = tonumber(redis.call('HGET', h, 'o:' .. part) or '-1')
    end
    if off > m then
      marks[part] = off
      dirty[part] = true
    else
      marks[part] = m
      ok = false
    end
  end
  if ok then
    n = n + 1
    if ARGV[i + 2] == 'e' then
      ne = ne + 1
      es = es + tonumber(ARGV[i + 3])
    end
    local ts = tonumber(ARGV[i + 4])
    if ts > l then l = ts end
    local u = ARGV[i + 5]
    if not have[u] then
      have[u] = true
      users[#users + 1] = u
    end
    applied = applied + 1
  end
end
if applied == 0 then return 0 end
local fields = {'n', fmt(n), 'ne', fmt(ne), 'es', fmt(es), 'l', fmt(l)}
for part in pairs(dirty) do
  fields[#fields + 1] = 'o:' .. part
  fields[#fields + 1] = fmt(marks[part])
end
redis.call('HSET', h, unpack(fields))
for k = 1, #users, 1000 do
  redis.call('SADD', us, unpack(users, k, math.min(k + 999, #users)))
end
return applied
