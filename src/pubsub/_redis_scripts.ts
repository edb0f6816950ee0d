// The Lua scripts of the Redis history and presence store: each runs
// atomically on Redis, so that a topic's offset, its stream entry and its
// PUB/SUB message are one step that no other node's publication can split.

import { createHash } from "node:crypto";

/** A Lua script and its SHA-1 (hex), for EVALSHA. */
export interface Script {
  /** The Lua text, for EVAL. */
  text: string;
  /** Its SHA-1 in lowercase hex, for EVALSHA. */
  sha: string;
}

/** Makes a {@linkcode Script} of Lua text. */
function script(text: string): Script {
  return { text, sha: createHash("sha1").update(text).digest("hex") };
}

/** The Redis clock in ms: ages and expiries follow Redis, not the nodes. */
const CLOCK = `
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/**
 * Shared by the history scripts: the offset as a stream id (`%d`: Lua's
 * own number format turns 1e14 into "1e+14"), and the topic's position.
 * When the meta key is gone, the position is a new epoch at offset 0 and
 * the log is deleted: its entries belong to the old epoch (a meta key that
 * expired before its log) and their ids would be above the new offsets.
 * Fields that are not ours make an error reply naming the meta key.
 */
const HISTORY = CLOCK + `
local function id(offset)
  return string.format("%d-0", offset)
end
local function position(meta, log, new_epoch)
  local state = redis.call("HMGET", meta, "e", "o")
  local epoch, top = state[1], tonumber(state[2] or "0")
  if not epoch then
    redis.call("DEL", log)
    return nil, new_epoch, 0, true
  end
  if top == nil or top < 0 or #epoch == 0 or #epoch > 255 then
    return redis.error_reply("The history meta hash " .. meta ..
      " holds no valid epoch and offset (fields e and o)")
  end
  return nil, epoch, top, false
end
`;

/**
 * Appends a publication to a topic's history and publishes it, atomically.
 *
 * KEYS: meta hash, log stream. ARGV: channel, a new epoch (used when the
 * topic has none), size, ttl (ms), metaTtl (ms), kind (`t` text, `b`
 * binary), message, bus envelope. Returns `{offset, epoch}`.
 *
 * Nothing is written before XADD, the one step that can fail on data that
 * is not ours (a key of another type, an entry id above the top): a failed
 * publication leaves the offset as it was, so it makes no gap.
 *
 * The PUB/SUB message is the positioned form documented in
 * `_redis_history.ts`: "P", the offset as two u32 big-endian (Redis's
 * bundled `struct` library), the epoch's length in a byte, the epoch, then
 * the envelope bytes as given.
 */
export const PUBLISH = script(
  HISTORY + `
local meta, log = KEYS[1], KEYS[2]
local err, epoch, top = position(meta, log, ARGV[2])
if err then return err end
local offset = top + 1
redis.call("XADD", log, "MAXLEN", ARGV[3], id(offset),
  "d", ARGV[7], "k", ARGV[6], "t", string.format("%d", now_ms()))
redis.call("HSET", meta, "e", epoch, "o", string.format("%d", offset))
redis.call("PEXPIRE", meta, ARGV[5])
redis.call("PEXPIRE", log, ARGV[4])
redis.call("PUBLISH", ARGV[1], "P" ..
  struct.pack(">I4I4B", math.floor(offset / 4294967296), offset % 4294967296,
    #epoch) .. epoch .. ARGV[8])
return {offset, epoch}
`,
);

/**
 * Reads a topic's position and entries.
 *
 * KEYS: meta hash, log stream. ARGV: a new epoch (used when the topic has
 * none: the position is made then, offset 0, and lives metaTtl), size, ttl
 * (ms), metaTtl (ms), the since offset or "" for the latest, the since
 * epoch, the limit (the latest N, without since).
 *
 * Returns `{epoch, top, malformed, offset1, kind1, payload1, offset2, ...}`,
 * oldest first, at most size of them (the stream may hold more when the
 * size was lowered). An entry counts when its id is `<offset>-0`, its time
 * is within ttl (Redis clock) and it has our fields (`d`, `k` of `t` or
 * `b`, a numeric `t`); entries without them are skipped and counted in
 * `malformed`.
 *
 * With since, none come when it is of another epoch, ahead of the top, or
 * before what size or ttl keep (the reader would drop them all); the reader
 * checks that the others are all those from since + 1 to the top.
 */
export const READ = script(
  HISTORY + `
local meta, log = KEYS[1], KEYS[2]
local err, epoch, top, new = position(meta, log, ARGV[1])
if err then return err end
if new then
  redis.call("HSET", meta, "e", epoch, "o", "0")
  redis.call("PEXPIRE", meta, ARGV[4])
end
local reply = {epoch, top, 0}
local first = top - tonumber(ARGV[2]) + 1
local oldest = now_ms() - tonumber(ARGV[3])
local since = tonumber(ARGV[5])
local entries
if since then
  if ARGV[6] ~= epoch or since >= top or since + 1 < first then return reply end
  entries = redis.call("XRANGE", log, "(" .. id(since), id(top))
else
  local count = math.min(tonumber(ARGV[7]), top - first + 1)
  if count <= 0 then return reply end
  entries = redis.call("XREVRANGE", log, id(top), "-", "COUNT", count)
end
local kept = {}
for _, entry in ipairs(entries) do
  local offset = tonumber(string.match(entry[1], "^(%d+)%-0$"))
  local fields, payload, kind, time = entry[2]
  for i = 1, #fields - 1, 2 do
    local name = fields[i]
    if name == "d" then payload = fields[i + 1]
    elseif name == "k" then kind = fields[i + 1]
    elseif name == "t" then time = tonumber(fields[i + 1]) end
  end
  if offset == nil or payload == nil or time == nil or
      (kind ~= "t" and kind ~= "b") then
    reply[3] = reply[3] + 1
  elseif time <= oldest then
    -- Newest first, the rest are older still. Since a position, one
    -- after it aged out: not recovered, the reader would drop the rest.
    if since then return {epoch, top, reply[3]} end
    break
  else
    kept[#kept + 1] = {offset, kind, payload}
  end
end
local from, to, step = 1, #kept, 1
if not since then from, to, step = #kept, 1, -1 end
for i = from, to, step do
  local entry = kept[i]
  reply[#reply + 1] = entry[1]
  reply[#reply + 1] = entry[2]
  reply[#reply + 1] = entry[3]
end
return reply
`,
);

/**
 * Writes a node's presence in a topic.
 *
 * KEYS: presence hash. ARGV: node id, ttl (ms), JSON. The field's value is
 * its expiry on the Redis clock in ms, `:`, then the JSON. The key lives
 * at least ttl more (never shortened: another node may have a longer one).
 */
export const PRESENCE_UPDATE = script(
  CLOCK + `
local now = now_ms()
local ttl = tonumber(ARGV[2])
redis.call("HSET", KEYS[1], ARGV[1],
  string.format("%d", now + ttl) .. ":" .. ARGV[3])
if redis.call("PTTL", KEYS[1]) < ttl then
  redis.call("PEXPIRE", KEYS[1], ttl)
end
return 1
`,
);

/**
 * Reads a topic's presence: deletes the fields that have expired (or whose
 * value does not start with an expiry: nothing could refresh them) and
 * returns `{node1, json1, node2, json2, ...}` of the others.
 */
export const PRESENCE_GET = script(
  CLOCK + `
local now = now_ms()
local all = redis.call("HGETALL", KEYS[1])
local live = {}
for i = 1, #all - 1, 2 do
  local expiry, json = string.match(all[i + 1], "^(%d+):(.*)$")
  if expiry == nil or tonumber(expiry) <= now then
    redis.call("HDEL", KEYS[1], all[i])
  else
    live[#live + 1] = all[i]
    live[#live + 1] = json
  end
end
return live
`,
);
