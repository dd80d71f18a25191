-- Applies one batch's events to one user, exactly once per source partition.
-- KEYS: 1 user hash, 2 recent list, 3 seen set (one slot: hash tag {u:<id>}).
-- ARGV: 1 recent cap, 2 TTL in ms, then per event (in offset order within a
-- partition): partition ("" = no identity: always applied), offset, kind ("e" explicit / "i" implicit),
-- weight, value, ts (Unix ms), item.
-- Returns the number of events applied.
local h, rk, sk = KEYS[1], KEYS[2], KEYS[3]
local cap = tonumber(ARGV[1])
local ttl = ARGV[2]
local function fmt(x) return string.format('%.17g', x) end

local marks, dirty = {}, {}
local applied = 0
local items = {}
local cur = nil
local n, ne, ni, es, iw, f, l
for i = 3, #ARGV, 7 do
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
    if cur == nil then
      cur = redis.call('HMGET', h, 'n', 'ne', 'ni', 'es', 'iw', 'f', 'l')
      n, ne, ni = tonumber(cur[1] or '0'), tonumber(cur[2] or '0'), tonumber(cur[3] or '0')
      es, iw = tonumber(cur[4] or '0'), tonumber(cur[5] or '0')
      f, l = tonumber(cur[6] or '0'), tonumber(cur[7] or '0')
    end
    local ts = tonumber(ARGV[i + 5])
    n = n + 1
    if ARGV[i + 2] == 'e' then
      ne = ne + 1
      es = es + tonumber(ARGV[i + 4])
    else
      ni = ni + 1
      iw = iw + tonumber(ARGV[i + 3])
    end
    if f == 0 or ts < f then f = ts end
    if ts > l then l = ts end
    applied = applied + 1
    items[#items + 1] = ARGV[i + 6]
  end
end
if applied == 0 then return 0 end

-- Distinct applied items, newest first.
local distinct, have = {}, {}
for k = #items, 1, -1 do
  local it = items[k]
  if not have[it] then
    have[it] = true
    distinct[#distinct + 1] = it
  end
end
-- An item already seen may be in the recent list: move it to the front.
local known = redis.call('SMISMEMBER', sk, unpack(distinct))
for k = 1, #distinct do
  if known[k] == 1 then redis.call('LREM', rk, 0, distinct[k]) end
end
local push = {}
for k = #distinct, 1, -1 do push[#push + 1] = distinct[k] end
redis.call('LPUSH', rk, unpack(push))
redis.call('LTRIM', rk, 0, cap - 1)
redis.call('SADD', sk, unpack(distinct))

local fields = {'n', fmt(n), 'ne', fmt(ne), 'ni', fmt(ni), 'es', fmt(es), 'iw', fmt(iw), 'f', fmt(f), 'l', fmt(l)}
for part in pairs(dirty) do
  fields[#fields + 1] = 'o:' .. part
  fields[#fields + 1] = fmt(marks[part])
end
redis.call('HSET', h, unpack(fields))
redis.call('PEXPIRE', h, ttl)
redis.call('PEXPIRE', rk, ttl)
redis.call('PEXPIRE', sk, ttl)
return applied
