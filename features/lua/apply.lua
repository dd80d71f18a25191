-- Applies a batch of events exactly once per key and source partition.
--
-- ARGV: 1 recent cap, 2 user TTL (ms), 3 popularity half-life (ms), 4 the
-- writer's wall clock (Unix ms), 5 a MessagePack array of: number of events
-- E, then E events of 8 fields each: partition ("topic/partition",
-- "" = no identity: always applied), offset, kind ("e" explicit, "i"
-- implicit), weight, value, ts (Unix ms), user, item. Then key groups, each:
-- type, k, then k event numbers (1-based, in offset order within a
-- partition), then the group's summary (see parse_summary; -1, none, for
-- groups of fewer than 16 events): per partition the lowest and highest
-- offset, and the group's totals as if every event applied. When every event is above its partition's mark (the normal case:
-- no redelivery) the summary is applied in O(1) script work; otherwise the
-- events are applied one by one. KEYS are consumed in group order:
--   u  user hash, recent list, seen set   (hash tag {u:<id>})
--   p  popularity zset, its meta hash, the item counters hash
--                                         (hash tag {pop})
--   g  global hash, user set              (hash tag {g})
-- On Redis Cluster each call carries one group, so it touches one slot; on a
-- single node a call carries many groups to save per-call overhead.
--
-- Every key group keeps, per partition, the highest offset applied to it
-- (field o:<partition> of the user hash, sr:{pop}:off or sr:{g}); an event
-- changes a group only when its offset is above it. The popularity slot's
-- marks guard the ranking and the item counters (sr:{pop}:item) together.
-- Numbers are handed to Redis as Lua numbers, which Redis writes in a form
-- that round-trips doubles exactly.
--
-- Per-user keys get their TTL refreshed when the hash's refresh stamp (x in
-- field s, writer's wall clock) is older than 1% of the TTL (under a day for 90
-- days), not on every write: PEXPIRE is the costliest part of a user write.
--
-- Returns, per group, the number of events it applied.
local cap, ttl, hl, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- ARGV[5] holds the rest, packed with MessagePack: one array of numbers and
-- strings, unpacked in C (no per-argument string objects, no number
-- parsing).
local A = cmsgpack.unpack(ARGV[5])
local nev = A[1]
local EV = 1
local function fmt(x) return x end
local function num(s) return tonumber(s or '0') or 0 end

-- The events, parsed once: partition, offset, explicit?, weight, value, ts,
-- user, item by event number.
local P, O, X, W, V, T, U, I = {}, {}, {}, {}, {}, {}, {}, {}
for e = 1, nev do
  local b = EV + (e - 1) * 8
  P[e], O[e], X[e] = A[b + 1], tonumber(A[b + 2]), A[b + 3] == 'e'
  W[e], V[e], T[e] = tonumber(A[b + 4]), tonumber(A[b + 5]), tonumber(A[b + 6])
  U[e], I[e] = A[b + 7], A[b + 8]
end

-- Reads the counter fields plus the marks of the group's partitions in one
-- HMGET. Returns the values, the marks table and the field count.
local function load(h, fields, idx)
  local nf = #fields
  local parts = {}
  for _, e in ipairs(idx) do
    local p = P[e]
    if p ~= '' and parts[p] == nil then
      parts[p] = true
      fields[#fields + 1] = 'o:' .. p
    end
  end
  local cur = redis.call('HMGET', h, unpack(fields))
  local marks = {}
  for k = nf + 1, #fields do
    marks[string.sub(fields[k], 3)] = tonumber(cur[k] or '-1')
  end
  return cur, marks
end

-- fresh reports whether event e is above its partition's mark and raises it.
local function fresh(e, marks, dirty)
  local p = P[e]
  if p == '' then return true end
  local off = O[e]
  if off > marks[p] then
    marks[p] = off
    dirty[p] = true
    return true
  end
  return false
end

local function add_marks(fields, marks, dirty)
  for p in pairs(dirty) do
    fields[#fields + 1] = 'o:' .. p
    fields[#fields + 1] = fmt(marks[p])
  end
end

-- fast reports whether every event of the group is above its partition's
-- mark; if so it raises the marks to the group's highest offsets.
local function fast(sum, marks, dirty)
  if sum.none then return false end
  for _, pt in ipairs(sum.parts) do
    if not (marks[pt[1]] < pt[2]) then return false end
  end
  for _, pt in ipairs(sum.parts) do
    marks[pt[1]] = pt[3]
    dirty[pt[1]] = true
  end
  return true
end

local function add_sum(c, sum)
  c.n, c.ne, c.ni = c.n + sum.n, c.ne + sum.ne, c.ni + sum.ni
  c.es, c.iw = c.es + sum.es, c.iw + sum.iw
  if c.f == 0 or sum.f < c.f then c.f = sum.f end
  if sum.l > c.l then c.l = sum.l end
end

-- Counters are packed in one hash field, s: float64s, little endian, in
-- the order n ne ni es iw f l, then x (users) or p pt (items). One field
-- instead of nine keeps the HMGET and HSET short (each argument and reply
-- element of redis.call costs about as much as a small command) and needs
-- no number formatting or parsing.
local UFMT, IFMT = '<dddddddd', '<ddddddddd'

-- counters unpacks s (nil: a new key) with format f; it returns the
-- counters and the trailing values.
local function counters(s, f)
  if not s then return {n = 0, ne = 0, ni = 0, es = 0, iw = 0, f = 0, l = 0}, 0, 0 end
  local n, ne, ni, es, iw, fi, l, a, b = struct.unpack(f, s)
  if f == UFMT then b = 0 end -- b is unpack's next position
  return {n = n, ne = ne, ni = ni, es = es, iw = iw, f = fi, l = l}, a, b
end

local function count(c, e)
  local ts = T[e]
  c.n = c.n + 1
  if X[e] then
    c.ne = c.ne + 1
    c.es = c.es + V[e]
  else
    c.ni = c.ni + 1
    c.iw = c.iw + W[e]
  end
  if c.f == 0 or ts < c.f then c.f = ts end
  if ts > c.l then c.l = ts end
end

local function pack(f, c, a, b)
  if f == UFMT then return struct.pack(f, c.n, c.ne, c.ni, c.es, c.iw, c.f, c.l, a) end
  return struct.pack(f, c.n, c.ne, c.ni, c.es, c.iw, c.f, c.l, a, b)
end

local function apply_user(h, rk, sk, idx, sum)
  local cur, marks = load(h, {'s'}, idx)
  local c, stamp = counters(cur[1], UFMT)
  local dirty, items = {}, {}
  local distinct, applied = nil, 0
  if fast(sum, marks, dirty) then
    add_sum(c, sum)
    distinct, applied = sum.list, sum.n
  else
    for _, e in ipairs(idx) do
      if fresh(e, marks, dirty) then
        count(c, e)
        items[#items + 1] = I[e]
      end
    end
    applied = #items
    -- Distinct applied items, newest first; pushed oldest first.
    distinct = {}
    local have = {}
    for k = #items, 1, -1 do
      local it = items[k]
      if not have[it] then
        have[it] = true
        distinct[#distinct + 1] = it
      end
    end
  end
  if applied == 0 then return 0 end
  -- An item already seen may be in the list: move it to the front. SADD
  -- says how many items are new; when all are (the common case) no LREM is
  -- needed. Otherwise a lone item is known; of several, the script does
  -- not know which (asking costs an SMISMEMBER on every call), so it
  -- removes each from the list (LREM of an absent item changes nothing).
  local push = {}
  for k = #distinct, 1, -1 do push[#push + 1] = distinct[k] end
  if redis.call('SADD', sk, unpack(distinct)) < #distinct then
    for _, it in ipairs(push) do redis.call('LREM', rk, 0, it) end
  end
  local len = redis.call('LPUSH', rk, unpack(push))
  if len > cap then
    redis.call('LTRIM', rk, 0, cap - 1)
  end
  local refresh = now - stamp > ttl / 100
  if refresh then stamp = now end
  local fields = {'s', pack(UFMT, c, stamp)}
  add_marks(fields, marks, dirty)
  redis.call('HSET', h, unpack(fields))
  if refresh then
    redis.call('PEXPIRE', h, ttl)
    redis.call('PEXPIRE', rk, ttl)
    redis.call('PEXPIRE', sk, ttl)
  elseif len == #push then
    -- The list was recreated (LREM emptied it): give it its TTL back.
    redis.call('PEXPIRE', rk, redis.call('PTTL', h))
  end
  return applied
end

-- zincr adds inc[it] to the score of every it of items: one ZMSCORE and one
-- ZADD per 1000 items instead of a ZINCRBY each (a redis.call costs about
-- as much as a small command). The sum is the same double ZINCRBY makes.
local function zincr(z, items, inc)
  for k = 1, #items, 1000 do
    local last = math.min(k + 999, #items)
    local cur = redis.call('ZMSCORE', z, unpack(items, k, last))
    local args = {}
    for j = k, last do
      local it = items[j]
      args[#args + 1] = (tonumber(cur[j - k + 1] or '0') or 0) + inc[it]
      args[#args + 1] = it
    end
    redis.call('ZADD', z, unpack(args))
  end
end

-- apply_items updates, for the events evs (applied, in order), the item
-- counters kept in the stats hash st (item -> packed counters and p / pt,
-- see counters): one HMGET and one HSET per 1000 items. They live in the
-- popularity slot, so the ranking's marks guard them too.
local function apply_items(st, evs)
  local stats, order = {}, {}
  for _, e in ipairs(evs) do
    local it = I[e]
    if stats[it] == nil then
      stats[it] = false
      order[#order + 1] = it
    end
  end
  for k = 1, #order, 1000 do
    local last = math.min(k + 999, #order)
    local cur = redis.call('HMGET', st, unpack(order, k, last))
    for j = k, last do
      local c, p, pt = counters(cur[j - k + 1], IFMT)
      stats[order[j]] = {c = c, p = p, pt = pt}
    end
  end
  -- Item popularity p is the weight sum decayed with the half-life to pt:
  -- p·2^(-(ts-pt)/hl) + w for a newer event, p + w·2^(-(pt-ts)/hl) for an
  -- older one.
  for _, e in ipairs(evs) do
    local s = stats[I[e]]
    local w, ts = W[e], T[e]
    if s.c.n == 0 or ts >= s.pt then
      if s.c.n > 0 and ts > s.pt then s.p = s.p * 2 ^ (-(ts - s.pt) / hl) end
      s.p = s.p + w
      s.pt = ts
    else
      s.p = s.p + w * 2 ^ (-(s.pt - ts) / hl)
    end
    count(s.c, e)
  end
  for k = 1, #order, 1000 do
    local args = {}
    for j = k, math.min(k + 999, #order) do
      local s = stats[order[j]]
      args[#args + 1] = order[j]
      args[#args + 1] = pack(IFMT, s.c, s.p, s.pt)
    end
    redis.call('HSET', st, unpack(args))
  end
end

-- Popularity ranking: score = Σ w·2^((ts-t0)/hl). When a batch would pass
-- 700 half-lives after t0, every score is rescaled to a new t0 first, so
-- doubles never overflow; events ~1000 half-lives before t0 add 0.
local function apply_pop(z, h, st, idx, sum)
  local cur, marks = load(h, {'t0', 'lt'}, idx)
  local t0, lt = tonumber(cur[1] or ''), num(cur[2])
  local dirty, todo, maxts = {}, {}, nil
  local quick = fast(sum, marks, dirty)
  if quick then
    maxts = sum.maxts
  else
    for _, e in ipairs(idx) do
      if fresh(e, marks, dirty) then
        local ts = T[e]
        todo[#todo + 1] = e
        if maxts == nil or ts > maxts then maxts = ts end
      end
    end
    if #todo == 0 then return 0 end
  end
  if t0 == nil then t0 = maxts end
  if (maxts - t0) / hl > 700 then
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
  if quick then
    -- The summary's increments are relative to 2^((maxts-t0)/hl).
    local factor = 2 ^ ((maxts - t0) / hl)
    for j, it in ipairs(sum.items) do
      order[j], inc[it] = it, sum.incs[j] * factor
    end
    todo = idx
  end
  for _, e in ipairs(quick and {} or todo) do
    local w, ts, it = W[e], T[e], I[e]
    if inc[it] == nil then
      inc[it] = 0
      order[#order + 1] = it
    end
    inc[it] = inc[it] + w * 2 ^ ((ts - t0) / hl)
  end
  zincr(z, order, inc)
  apply_items(st, todo)
  if maxts > lt then lt = maxts end
  local fields = {'t0', fmt(t0), 'hl', fmt(hl), 'lt', fmt(lt)}
  add_marks(fields, marks, dirty)
  redis.call('HSET', h, unpack(fields))
  return #todo
end

local function apply_global(h, us, idx, sum)
  local cur, marks = load(h, {'n', 'ne', 'es', 'l'}, idx)
  local n, ne, es, l = num(cur[1]), num(cur[2]), num(cur[3]), num(cur[4])
  local dirty, users, have, applied = {}, {}, {}, 0
  if fast(sum, marks, dirty) then
    n, ne, es = n + sum.n, ne + sum.ne, es + sum.es
    if sum.l > l then l = sum.l end
    users, applied = sum.users, sum.n
    idx = {}
  end
  for _, e in ipairs(idx) do
    if fresh(e, marks, dirty) then
      n = n + 1
      if X[e] then
        ne = ne + 1
        es = es + V[e]
      end
      local ts = T[e]
      if ts > l then l = ts end
      local u = U[e]
      if not have[u] then
        have[u] = true
        users[#users + 1] = u
      end
      applied = applied + 1
    end
  end
  if applied == 0 then return 0 end
  local fields = {'n', fmt(n), 'ne', fmt(ne), 'es', fmt(es), 'l', fmt(l)}
  add_marks(fields, marks, dirty)
  redis.call('HSET', h, unpack(fields))
  for k = 1, #users, 1000 do
    redis.call('SADD', us, unpack(users, k, math.min(k + 999, #users)))
  end
  return applied
end

-- parse_summary reads a group's summary at ARGV[a]: np, then np ×
-- (partition, lowest offset, highest offset), then by type
--   u  n ne ni es iw f l, nd, nd distinct items newest first
--   p  maxts, ni, ni × (item, Σ w·2^((ts-maxts)/hl))
--   g  n ne es l, nu, nu distinct users
-- and returns it with the index after it. np = -1 means no summary (the
-- group repeats an offset): the events are applied one by one.
local function parse_summary(typ, a)
  local sum = {parts = {}}
  local np = tonumber(A[a])
  a = a + 1
  if np < 0 then
    -- No summary (duplicates inside the group): event by event.
    sum.none = true
    return sum, a
  end
  for j = 1, np do
    sum.parts[j] = {A[a], tonumber(A[a + 1]), tonumber(A[a + 2])}
    a = a + 3
  end
  if typ == 'u' then
    sum.n, sum.ne, sum.ni = tonumber(A[a]), tonumber(A[a + 1]), tonumber(A[a + 2])
    sum.es, sum.iw = tonumber(A[a + 3]), tonumber(A[a + 4])
    sum.f, sum.l = tonumber(A[a + 5]), tonumber(A[a + 6])
    a = a + 7
    local nd = tonumber(A[a])
    sum.list = {}
    for j = 1, nd do sum.list[j] = A[a + j] end
    a = a + 1 + nd
  elseif typ == 'p' then
    sum.maxts = tonumber(A[a])
    local ni = tonumber(A[a + 1])
    a = a + 2
    sum.items, sum.incs = {}, {}
    for j = 1, ni do
      sum.items[j], sum.incs[j] = A[a], tonumber(A[a + 1])
      a = a + 2
    end
  elseif typ == 'g' then
    sum.n, sum.ne, sum.es, sum.l = tonumber(A[a]), tonumber(A[a + 1]), tonumber(A[a + 2]), tonumber(A[a + 3])
    local nu = tonumber(A[a + 4])
    sum.users = {}
    for j = 1, nu do sum.users[j] = A[a + 4 + j] end
    a = a + 5 + nu
  end
  return sum, a
end

local out = {}
local a, ki = EV + nev * 8 + 1, 1
while a <= #A do
  local typ, k = A[a], tonumber(A[a + 1])
  local idx = {}
  for j = 1, k do idx[j] = tonumber(A[a + 1 + j]) end
  local sum
  sum, a = parse_summary(typ, a + 2 + k)
  if typ == 'u' then
    out[#out + 1] = apply_user(KEYS[ki], KEYS[ki + 1], KEYS[ki + 2], idx, sum)
    ki = ki + 3
  elseif typ == 'p' then
    out[#out + 1] = apply_pop(KEYS[ki], KEYS[ki + 1], KEYS[ki + 2], idx, sum)
    ki = ki + 3
  elseif typ == 'g' then
    out[#out + 1] = apply_global(KEYS[ki], KEYS[ki + 1], idx, sum)
    ki = ki + 2
  else
    return redis.error_reply('ERR streamrec apply: unknown group type ' .. tostring(typ))
  end
end
return out
