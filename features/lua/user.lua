-- A user's state unless the caller already holds it (the serving read).
-- KEYS: 1 user hash, 2 recent list, 3 vector, 4 seen set (hash tag {u:<id>}).
-- ARGV: 1 the caller's stamp: the packed counters (field s) followed by the
-- vector's 8-byte version header, or '' for none.
-- Returns 0 for an unknown user, 1 when the stamp is current, else
-- {counters, vector header, recent items, vector or false, seen items}.
-- The counters change with every applied event (and so do recent and seen)
-- and the header with every vector write, so an equal stamp is an equal state.
local s = redis.call('HGET', KEYS[1], 's')
if not s then return 0 end
local vh = redis.call('GETRANGE', KEYS[3], 0, 7)
if s .. vh == ARGV[1] then return 1 end
return {s, vh, redis.call('LRANGE', KEYS[2], 0, -1), redis.call('GET', KEYS[3]), redis.call('SMEMBERS', KEYS[4])}
