-- Applies one batch's events to one item, exactly once per source partition.
-- KEYS: 1 item hash (hash tag {i:<id>}).
-- ARGV: 1 half-life in ms, then per event: partition, offset, kind, weight,
-- value, ts.
-- Popularity p is the weight sum decayed with the half-life to pt (event
-- time): p·2^(-(ts-pt)/hl) + w for a newer event, p + w·2^(-(pt-ts)/hl) for
-- an older one.
-- Returns the number of events applied.
local h = KEYS[1]
local hl = tonumber(ARGV[1])
local function fmt(x) return string.format('%.17g', x) end

local marks, dirty = {}, {}
local applied = 0
local cur = nil
local n, ne, ni, es, iw, f, l, p, pt
for i = 2, #ARGV, 6 do
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
      cur = redis.call('HMGET', h, 'n', 'ne', 'ni', 'es', 'iw', 'f', 'l', 'p', 'pt')
      n, ne, ni = tonumber(cur[1] or '0'), tonumber(cur[2] or '0'), tonumber(cur[3] or '0')
      es, iw = tonumber(cur[4] or '0'), tonumber(cur[5] or '0')
      f, l = tonumber(cur[6] or '0'), tonumber(cur[7] or '0')
      p, pt = tonumber(cur[8] or '0'), tonumber(cur[9] or '0')
    end
    local w, ts = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 5])
    if n == 0 or ts >= pt then
      if n > 0 and ts > pt then p = p * 2 ^ (-(ts - pt) / hl) end
      p = p + w
      pt = ts
    else
      p = p + w * 2 ^ (-(pt - ts) / hl)
    end
    n = n + 1
    if ARGV[i + 2] == 'e' then
      ne = ne + 1
      es = es + tonumber(ARGV[i + 4])
    else
      ni = ni + 1
      iw = iw + w
    end
    if f == 0 or ts < f then f = ts end
    if ts > l then l = ts end
    applied = applied + 1
  end
end
if applied == 0 then return 0 end
local fields = {'n', fmt(n), 'ne', fmt(ne), 'ni', fmt(ni), 'es', fmt(es), 'iw', fmt(iw), 'f', fmt(f), 'l', fmt(l),
  'p', fmt(p), 'pt', fmt(pt)}
for part in pairs(dirty) do
  fields[#fields + 1] = 'o:' .. part
  fields[#fields + 1] = fmt(marks[part])
end
redis.call('HSET', h, unpack(fields))
return applied
