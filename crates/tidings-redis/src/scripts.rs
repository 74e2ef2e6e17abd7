//! The Lua scripts that make multi-key steps atomic on the server.

use std::sync::LazyLock;

use redis::Script;

/// Creates streams that are bound but missing, with their consumer group, provided the
/// bindings did not change since the caller read them (else returns -1 and creates nothing).
///
/// `KEYS[1]` the bindings version, `KEYS[2..]` the streams. `ARGV[1]` the version the caller
/// read, `ARGV[2]` the group.
pub(crate) static CREATE_BOUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return -1 end
for i = 2, #KEYS do
  redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[2], '0', 'MKSTREAM')
end
return #KEYS - 1
",
    )
});

/// Adds patterns to a subscription's bindings; when anything changed, sets the version to a
/// fresh token (a counter would start again at the same values after Redis lost its data,
/// and a publisher's stale table could then pass for current). Returns the version.
///
/// `KEYS[1]` the bindings hash, `KEYS[2]` the version. `ARGV[1]` the fresh token,
/// `ARGV[2]` the subscription, `ARGV[3..]` its patterns.
pub(crate) static BIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('HGET', KEYS[1], ARGV[2])
local patterns, seen, changed = {}, {}, not current
if current then
  for _, p in ipairs(cjson.decode(current)) do
    patterns[#patterns + 1] = p; seen[p] = true
  end
end
for i = 3, #ARGV do
  if not seen[ARGV[i]] then
    patterns[#patterns + 1] = ARGV[i]; seen[ARGV[i]] = true; changed = true
  end
end
if changed then
  local encoded = '[]'
  if #patterns > 0 then encoded = cjson.encode(patterns) end
  redis.call('HSET', KEYS[1], ARGV[2], encoded)
  redis.call('SET', KEYS[2], ARGV[1])
  return ARGV[1]
end
return redis.call('GET', KEYS[2]) or '0'
",
    )
});

/// Removes a subscription: its binding (bumping the version, so that every publisher reloads
/// its table), its stream, its waiting retries and its dead letters.
///
/// KEYS: bindings, version, stream, delayed set, dead letters. ARGV: a new version, the
/// subscription, the prefix of its retry keys.
pub(crate) static UNBIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HDEL', KEYS[1], ARGV[2]) == 1 then
  redis.call('SET', KEYS[2], ARGV[1])
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  redis.call('DEL', ARGV[3] .. id)
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
return 1
",
    )
});

/// Moves retries that are due back into their stream. Returns the number moved and the
/// next due time (Unix ms, -1 when none waits).
///
/// `KEYS[1]` the delayed set, `KEYS[2]` the stream. `ARGV[1]` now, `ARGV[2]` the most to
/// move, `ARGV[3]` the prefix of the retries' keys.
pub(crate) static MOVE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local key = ARGV[3] .. id
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then redis.call('XADD', KEYS[2], '*', unpack(fields)) end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local at = -1
if next[2] then at = tonumber(next[2]) end
return {#due, at}
",
    )
});
