-- Top items of the popularity ranking in one category.
-- KEYS: 1 popularity sorted set, 2 hash item -> categories joined by "\31"
-- (hash tag {pop}).
-- ARGV: 1 n, 2 category, 3 most members to scan.
-- Returns item, score, item, score, … best first.
local z, c = KEYS[1], KEYS[2]
local n, cat, limit = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local sep = '\31'
local needle = sep .. cat .. sep
local out, found = {}, 0
local chunk = math.max(4 * n, 256)
local start = 0
while found < n and start < limit do
  local page = redis.call('ZREVRANGE', z, start, start + chunk - 1, 'WITHSCORES')
  if #page == 0 then break end
  local ids = {}
  for j = 1, #page, 2 do ids[#ids + 1] = page[j] end
  local cats = redis.call('HMGET', c, unpack(ids))
  for k = 1, #ids do
    local cs = cats[k]
    if cs and string.find(sep .. cs .. sep, needle, 1, true) then
      out[#out + 1] = ids[k]
      out[#out + 1] = page[2 * k]
      found = found + 1
      if found == n then break end
    end
  end
  start = start + chunk
end
return out
