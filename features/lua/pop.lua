-- Applies one batch's events to the popularity ranking, exactly once per
-- source partition.
-- KEYS: 1 sorted set item -> sum of w·2^((ts-t0)/hl), 2 its hash of marks,
-- t0 (epoch, Unix ms), hl and lt (last event ts) (hash tag {pop}).
-- ARGV: 1 half-life in ms, then per event: partition, offset, weight, ts, item.
-- Scores grow as 2^((ts-t0)/hl); when a batch would pass 2^700 (700
-- half-lives after t0) every score is rescaled to a new t0 first, so doubles
-- never overflow. Events more than ~1000 half-lives older than t0 add 0.
-- Returns the number of events applied.
local z, h = KEYS[1], KEYS[2]
local hl = tonumber(ARGV[1])
local function fmt(x) return string.format('%.17g', x) end

local meta = redis.call('HMGET', h, 't0', 'lt')
local t0, lt = tonumber(meta[1] or ''), tonumber(meta[2] or '0')
local marks, dirty = {}, {}
local todo = {}
local maxts = nil
for i = 2, #ARGV, 5 do
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
    local ts = tonumber(ARGV[i + 3])
    todo[#todo + 1] = i
    if maxts == nil or ts > maxts then maxts = ts end
  end
end
if #todo == 0 then return 0 end
if t0 == nil then t0 = maxts end
if (maxts - t0) / hl > 700 then
  -- Rebase: divide every score by 2^((maxts-t0)/hl).
  local factor = 2 ^ (-(maxts - t0) / hl)
  local all = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
  for k = 1, #all, 2000 do
    local args = {}
    for j = k, math.min(k + 1999, #all), 2 do
      args[#args + 1] = fmt(tonumber(all[j + 1]) * factor)
      args[#args + 1] = all[j]
    end
    redis.call('ZADD', z, unpack(args))
  end
  t0 = maxts
end
local inc, order = {}, {}
for _, i in ipairs(todo) do
  local w, ts, it = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4]
  if inc[it] == nil then
    inc[it] = 0
    order[#order + 1] = it
  end
  inc[it] = inc[it] + w * 2 ^ ((ts - t0) / hl)
end
for _, it in ipairs(order) do
  redis.call('ZINCRBY', z, fmt(inc[it]), it)
end
if maxts > lt then lt = maxts end
local fields = {'t0', fmt(t0), 'hl', fmt(hl), 'lt', fmt(lt)}
for part in pairs(dirty) do
  fields[#fields + 1] = 'o:' .. part
  fields[#fields + 1] = fmt(marks[part])
end
redis.call('HSET', h, unpack(fields))
return #todo
