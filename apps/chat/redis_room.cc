#include "apps/chat/redis_room.h"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "apps/chat/chat.pb.h"
#include "apps/chat/rules.h"
#include "apps/chat/text.h"

namespace udpmsg::chat {
namespace {

// Every script gets KEYS[1] = seq, KEYS[2] = log, and ARGV[1] = MAXLEN,
// ARGV[2] = the time (Unix ms), ARGV[3] = this server, ARGV[4] = the alive
// key prefix, ARGV[5] = the room's key prefix; its own keys and arguments
// follow. The preamble's functions: append numbers a line and adds it to the
// stream; holder reads a nick key and returns its holder if that holder's
// server is alive (this server counts as alive); evict settles a nick whose
// holder's server is dead but not reaped yet (below), and settle does so
// with its leave line ("server lost") and its tombstone; bury and unbury
// keep and take a dead server's tombstones (below).
constexpr char kPreamble[] = R"lua(
local function append(k, f, t, o, ti, fi, rs, ri, ts, fs)
  local n = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'n', n, 'k', k, 'f', f, 't', t,
             'o', o, 'ti', ti, 'fi', fi, 'ms', ARGV[2], 'rs', rs, 'ri', ri,
             'ts', ts or '', 'fs', fs or '')
  return n
end
local function holder(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local s, id, h, nick = string.match(v, '^(%S+) (%d+) (%S+) (%S+)$')
  if not s then return nil end
  if s ~= ARGV[3] and redis.call('EXISTS', ARGV[4] .. s) == 0 then return nil end
  return s, id, h, nick
end
local function ours(key, server, id)
  local v = redis.call('GET', key)
  local p = server .. ' ' .. id .. ' '
  if v and string.sub(v, 1, #p) == p then
    redis.call('DEL', key)
    return true
  end
  return false
end
local function evict(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local s, id, h, nick = string.match(v, '^(%S+) (%d+) (%S+) (%S+)$')
  if not s or s == ARGV[3] or redis.call('EXISTS', ARGV[4] .. s) == 1 then return nil end
  redis.call('DEL', key)
  if redis.call('ZREM', ARGV[5] .. 'who:' .. s, nick) == 0 then return nil end
  return s, id, h, nick
end
local function bury(s, id, said)
  local key = ARGV[5] .. 'gone:' .. s
  redis.call('HSET', key, id, said)
  redis.call('PEXPIRE', key, 86400000)
end
local function unbury(id)
  local key = ARGV[5] .. 'gone:' .. ARGV[3]
  local v = redis.call('HGET', key, id)
  if v then redis.call('HDEL', key, id) end
  return v
end
local function untoken(h, s, id)
  local key = ARGV[5] .. 'tok:' .. h
  if h ~= '-' and h ~= '' and redis.call('GET', key) == s .. ' ' .. id then
    redis.call('DEL', key)
    return true
  end
  return false
end
local function settle(key)
  local ds, did, dh, dnick = evict(key)
  if ds then
    append(4, dnick, 'server lost', '', 0, 0, '', '0')
    bury(ds, did, '1')
  end
end
)lua";

// Tombstones. A member a live server settled for a dead one (the reaper, or
// a join, rename or reclaim that evicted it) gets an entry in
// `gone:<dead server>`: its member number, '1' if the room was told it left,
// '0' if not (over the announce limit). A member whose resume token took it
// over on another server gets 'r' whether its server seemed dead or not
// (the room saw "NICK reconnected": that member is done; its server cleans
// up when it reads that line, kForget, and a leave of it before then writes
// no line). A dead server that was only stalled (paused, cut off from
// Redis) finds the others when it resumes (its heartbeat, kHeal) and takes
// them back (Reclaim): its member's leave writes no second line (kLeave);
// a member still there is written back, with "NICK reconnected" if the
// room was told it left, or closed without a line if its nick is someone
// else's now or its token moved on (kReclaim); tombstones of members it no
// longer has are swept (kSweep). The `gone:` key expires a day after the
// last burial for that server, and a server deletes its own at Create and
// Stop: a server gone for good leaves at most the rosters it lost behind.
//
// A member the reaper settled also leaves `tok:<its token hash>` ->
// "SERVER ID", expiring in a day. A join with that token that finds no
// holder to take over (the reaper freed the nick: a plain join) consumes
// the key and turns that member's tombstone to 'r' too. Without it the
// stalled server, once resumed, would write back a member whose client is
// elsewhere or gone ("NICK reconnected"), a ghost holding the nick until
// its connection timed out there. A leave of the member (kLeave) or its
// write-back (kReclaim) deletes the key.

// A nick whose holder's server died (its alive key expired) is free, but
// the holder is still on that server's roster until a live server reaps it
// (a heartbeat later); the reaper then skips it if someone holds the nick
// again, so nobody would ever say that holder left. A join or rename that
// takes the nick meanwhile first calls evict: the holder leaves the dead
// server's roster and nick key, and the caller writes the line the room
// owes, before its own: the holder's own token makes the join a reconnect
// ("NICK reconnected", not a second "NICK joined"), anything else writes
// the holder's leave ("server lost").

// KEYS[3] nick key, [4] ids, [5] who:me, [6] servers. ARGV[6] nick,
// [7] presented token hash ('' none), [8] new token hash ('-' none),
// [9] announce '1'/'0', [10] history lines, [11] a local member this
// server decided to replace ('0' none), [12] the line number after which
// the history starts (the client's last line: it has the ones before),
// [13] the highest member number this server gave out (the counter is put
// above it first: a Redis that lost its data before this server's next
// heartbeat healed it would hand out a number again).
// A presented token with no holder to take over consumes its tok key
// (Tombstones).
constexpr char kJoin[] = R"lua(
if tonumber(redis.call('GET', KEYS[4]) or '0') < tonumber(ARGV[13]) then
  redis.call('SET', KEYS[4], ARGV[13])
end
local s, id, h, nick = holder(KEYS[3])
local rs, ri = '', '0'
if s then
  if (s == ARGV[3] and id == ARGV[11]) or (ARGV[7] ~= '' and h == ARGV[7]) then
    rs, ri = s, id
    redis.call('ZREM', ARGV[5] .. 'who:' .. s, nick)
    if s ~= ARGV[3] then bury(s, id, 'r') end
  else
    return {'taken', s, id}
  end
else
  local ds, did, dh, dnick = evict(KEYS[3])
  if ds and ARGV[7] ~= '' and dh == ARGV[7] then
    rs, ri = ds, did
    bury(ds, did, 'r')
  elseif ds then
    if ARGV[9] == '1' then append(4, dnick, 'server lost', '', 0, 0, '', '0') end
    bury(ds, did, ARGV[9])
  end
  if rs == '' and ARGV[7] ~= '' then
    -- The token's member was reaped (kReap): it is done on its server too.
    local ts, tid = string.match(redis.call('GET', ARGV[5] .. 'tok:' .. ARGV[7]) or '',
                                 '^(%S+) (%d+)$')
    if ts and untoken(ARGV[7], ts, tid) and ts ~= ARGV[3] then bury(ts, tid, 'r') end
  end
end
local me = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[3], ARGV[3] .. ' ' .. me .. ' ' .. ARGV[8] .. ' ' .. ARGV[6])
redis.call('ZADD', KEYS[5], me, ARGV[6])
redis.call('SADD', KEYS[6], ARGV[3])
local start
if rs ~= '' and (ARGV[9] == '1' or rs ~= ARGV[3]) then
  start = append(6, '', ARGV[6] .. ' reconnected', '', 0, 0, rs, ri)
elseif ARGV[9] == '1' then
  start = append(3, ARGV[6], '', '', 0, 0, '', '0')
else
  start = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
end
local hist = {}
local want = tonumber(ARGV[10])
local after = tonumber(ARGV[12])
local last = '+'
local scanned = 0
while #hist < want and scanned < 10 * want do
  local batch = redis.call('XREVRANGE', KEYS[2], last, '-', 'COUNT', want)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    last = '(' .. e[1]
    scanned = scanned + 1
    local f = e[2]
    local n = tonumber(f[2])
    if n <= after then
      scanned = 10 * want
      break
    end
    if n < start and f[12] == '0' and #hist < want then table.insert(hist, e) end
  end
end
return {'ok', me, start, rs, ri, hist}
)lua";

// KEYS[3] nick key, [4] who:me. ARGV[6] id, [7] nick, [8] why, [9] announce,
// [10] its token hash ('-' none: its tok key, if the reaper left one, goes).
// A nick another member holds now (taken over with its token, here or
// elsewhere) was already left: no line, and our roster's entry for the nick
// is its new holder's or gone. So was a member another server settled while
// this one was taken for dead (its tombstone). A missing nick key otherwise
// (Redis lost its data) still writes the leave the room owes.
constexpr char kLeave[] = R"lua(
untoken(ARGV[10], ARGV[3], ARGV[6])
local held = ours(KEYS[3], ARGV[3], ARGV[6])
local settled = unbury(ARGV[6])
if not held and (settled or redis.call('EXISTS', KEYS[3]) == 1) then
  return 'gone'
end
redis.call('ZREM', KEYS[4], ARGV[7])
if ARGV[9] == '1' then append(4, ARGV[7], ARGV[8], '', 0, 0, '', '0') end
return 'ok'
)lua";

// KEYS[3] new nick key, [4] old nick key, [5] who:me. ARGV[6] id, [7] old
// nick, [8] new nick, [9] token hash.
constexpr char kRename[] = R"lua(
if redis.call('ZSCORE', KEYS[5], ARGV[7]) ~= ARGV[6] then return 'gone' end
local s, id = holder(KEYS[3])
if s and not (s == ARGV[3] and id == ARGV[6]) then return 'taken' end
if not s then settle(KEYS[3]) end
ours(KEYS[4], ARGV[3], ARGV[6])
redis.call('SET', KEYS[3], ARGV[3] .. ' ' .. ARGV[6] .. ' ' .. ARGV[9] .. ' ' .. ARGV[8])
redis.call('ZREM', KEYS[5], ARGV[7])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[8])
append(5, ARGV[7], ARGV[8], '', 0, 0, '', '0')
return 'ok'
)lua";

// A member speaks (kSay, kPrivate, kRename) only while the roster has it
// ('gone' otherwise): a server the room took for dead (its members reaped,
// or one taken over elsewhere) writes no line of theirs until its Reclaim
// has written them back, and kReclaim writes "NICK reconnected" in the same
// script that puts the member back, so no line of a member the room was
// told had left comes before that line, however late the call arrives.

// KEYS[3] who:me. ARGV[6] kind, [7] nick, [8] text, [9] id.
constexpr char kSay[] = R"lua(
if redis.call('ZSCORE', KEYS[3], ARGV[7]) ~= ARGV[9] then return 'gone' end
return append(tonumber(ARGV[6]), ARGV[7], ARGV[8], '', 0, 0, '', '0')
)lua";

// KEYS[3] the target's nick key, [4] who:me. ARGV[6] from nick, [7] text,
// [8] from id.
constexpr char kPrivate[] = R"lua(
if redis.call('ZSCORE', KEYS[4], ARGV[6]) ~= ARGV[8] then return 'gone' end
local s, id, h, nick = holder(KEYS[3])
if not s then return 'nosuch' end
append(2, ARGV[6], ARGV[7], nick, id, ARGV[8], '', '0', s, ARGV[3])
return 'ok'
)lua";

// KEYS[3] servers. ARGV[6] nicks listed at most. Returns the room's size,
// then nick, number pairs of every live server's first members.
constexpr char kWho[] = R"lua(
local out = {0}
for _, s in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if s == ARGV[3] or redis.call('EXISTS', ARGV[4] .. s) == 1 then
    local key = ARGV[5] .. 'who:' .. s
    out[1] = out[1] + redis.call('ZCARD', key)
    for _, x in ipairs(redis.call('ZRANGE', key, 0, tonumber(ARGV[6]) - 1, 'WITHSCORES')) do
      table.insert(out, x)
    end
  end
end
return out
)lua";

// KEYS[3] servers. ARGV[6] a server whose alive key is gone, [7] announce
// limit. Exactly one live server reaps it (SREM answers 1 once). Each
// member settled gets its tombstone and, with a token, its tok key.
constexpr char kReap[] = R"lua(
if redis.call('EXISTS', ARGV[4] .. ARGV[6]) == 1 then return -1 end
if redis.call('SREM', KEYS[3], ARGV[6]) == 0 then return -1 end
local key = ARGV[5] .. 'who:' .. ARGV[6]
local members = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local count = #members / 2
for i = 1, #members, 2 do
  -- A member that took its nick back elsewhere is no longer the dead one's.
  local key = ARGV[5] .. 'nick:' .. string.lower(members[i])
  local h = string.match(redis.call('GET', key) or '', '^%S+ %d+ (%S+) ')
  if ours(key, ARGV[6], members[i + 1]) then
    local said = count <= tonumber(ARGV[7])
    if said then append(4, members[i], 'server lost', '', 0, 0, '', '0') end
    bury(ARGV[6], members[i + 1], said and '1' or '0')
    if h and h ~= '-' then
      redis.call('SET', ARGV[5] .. 'tok:' .. h, ARGV[6] .. ' ' .. members[i + 1], 'PX', 86400000)
    end
  end
end
redis.call('DEL', key)
return count
)lua";

// Every heartbeat. KEYS[3] ids, [4] servers. ARGV[6] the last line number
// this server read, [7] its highest member number. A Redis that lost its
// data (restarted without persistence, flushed) gets its counters back
// above what this server has seen (line numbers never repeat; member
// numbers do not within a server, and private lines name their members'
// servers, see ToEntry). Returns
// {1 if the line counter was behind, 1 if this server was not registered,
// its tombstones but 'r' (others took it for dead: see Tombstones), the
// size of its roster (who:me)}; the first server to see the loss tells the
// room (ARGV[8], a SYSTEM line).
constexpr char kHeal[] = R"lua(
local behind = 0
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[6]) then
  redis.call('SET', KEYS[1], ARGV[6])
  append(6, '', ARGV[8], '', 0, 0, '', '0')
  behind = 1
end
if tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[7]) then
  redis.call('SET', KEYS[3], ARGV[7])
end
local buried = 0
for _, v in ipairs(redis.call('HVALS', ARGV[5] .. 'gone:' .. ARGV[3])) do
  if v ~= 'r' then buried = buried + 1 end
end
return {behind, redis.call('SADD', KEYS[4], ARGV[3]), buried,
        redis.call('ZCARD', ARGV[5] .. 'who:' .. ARGV[3])}
)lua";

// KEYS[3] nick key, [4] who:me. ARGV[6] id, [7] nick. A member this server
// closed as replaced: its nick key and roster entry go if they still name
// it, and its tombstone goes.
constexpr char kForget[] = R"lua(
ours(KEYS[3], ARGV[3], ARGV[6])
if redis.call('ZSCORE', KEYS[4], ARGV[7]) == ARGV[6] then redis.call('ZREM', KEYS[4], ARGV[7]) end
unbury(ARGV[6])
return 'ok'
)lua";

// After Reclaim's members and leaves, the tombstones not in ARGV[6..] are
// dropped: they belong to members this server no longer has (closed as
// replaced). ARGV[6..] are the members just written back (a tombstone of
// one now is new: a reaper came between, and the next Reclaim needs it)
// and leaves still to be written.
constexpr char kSweep[] = R"lua(
local key = ARGV[5] .. 'gone:' .. ARGV[3]
local keep = {}
for i = 6, #ARGV do keep[ARGV[i]] = true end
for _, id in ipairs(redis.call('HKEYS', key)) do
  if not keep[id] then redis.call('HDEL', key, id) end
end
return 'ok'
)lua";

// KEYS[3] nick key, [4] who:me. ARGV[6] id, [7] token hash, [8] nick. A
// member the room was told had left while this server was taken for dead
// (its tombstone says so) is back: "NICK reconnected". One whose nick was
// taken meanwhile, or whose token took it over elsewhere, is closed without
// a line (Reclaim): the room was told. A holder on a dead server not reaped
// yet is settled first, as kRename does. The member's tok key goes.
constexpr char kReclaim[] = R"lua(
local s, id = holder(KEYS[3])
untoken(ARGV[7], ARGV[3], ARGV[6])
if s and not (s == ARGV[3] and id == ARGV[6]) then
  unbury(ARGV[6])
  return 'taken'
end
local t = unbury(ARGV[6])
if t == 'r' then return 'taken' end
if not s then settle(KEYS[3]) end
redis.call('SET', KEYS[3], ARGV[3] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. ARGV[8])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[8])
if t == '1' then append(6, '', ARGV[8] .. ' reconnected', '', 0, 0, '', '0') end
return 'ok'
)lua";

// An error reply of a Redis that takes no writes for now (a replica, a
// primary without its replicas, loading its data, out of memory, a failed
// save, a script running long, a cluster without a quorum), whatever the
// call: not the call's fault, and over when Redis is.
bool RefusesWrites(const std::string& error) {
  // Redis 7 passes a script's refused write on with its code first; 6.2
  // wraps it: "ERR Error running script (...): ... -READONLY ...".
  const bool wrapped = error.rfind("ERR Error running script", 0) == 0;
  for (const char* code : {"READONLY", "NOREPLICAS", "LOADING", "MASTERDOWN", "OOM", "MISCONF",
                           "BUSY", "CLUSTERDOWN"}) {
    const size_t n = std::strlen(code);
    if (error.compare(0, n, code) == 0 && (error.size() == n || error[n] == ' ')) return true;
    if (wrapped && error.find(absl::StrCat("-", code, " ")) != std::string::npos) return true;
  }
  return false;
}

// A member's call that did not go through: Redis lost, an error reply, or
// 'gone' (the member is off the roster: kSay, kPrivate, kRename).
bool Unanswered(const absl::StatusOr<redis::Reply>& r) {
  return !r.ok() || r->is_error() || r->str == "gone";
}

// A pipeline's replies, or its failure: an error reply (a Redis loading its
// data, out of memory, read-only) wrote nothing, so it fails the pipeline as
// a lost connection does.
absl::StatusOr<std::vector<redis::Reply>> WithoutErrorReplies(
    absl::StatusOr<std::vector<redis::Reply>> r) {
  if (!r.ok()) return r;
  for (const redis::Reply& reply : *r) {
    if (reply.is_error()) return absl::UnavailableError(reply.str);
  }
  return r;
}

bool NameOk(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

std::string RandomId() {
  std::random_device rd;
  std::string id;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(rd(), absl::kZeroPad8));
  return id.substr(0, 16);
}

// A token's hash as the Redis value holds it ("-" for none).
std::string StoredHash(const std::string& hash) { return hash.empty() ? "-" : hash; }

// A field of a stream entry's flat field list, "" when absent.
const std::string& Field(const redis::Reply& fields, const char* name) {
  static const std::string kEmpty;
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    if (fields.elements[i].str == name) return fields.elements[i + 1].str;
  }
  return kEmpty;
}

uint64_t FieldNumber(const redis::Reply& fields, const char* name) {
  uint64_t v = 0;
  return absl::SimpleAtoi(Field(fields, name), &v) ? v : 0;
}

// A member nobody has: a private line none of this server's members gets.
constexpr MemberId kNobody = std::numeric_limits<MemberId>::max();

// A stream entry [id, [field, value, ...]] as a room entry for server `me`
// (index = its line number), or false if it is not one of ours. A private
// line names its target's and its sender's servers (ts, fs) beside their
// numbers: a member number is unique within its server only once Redis has
// lost its data (two servers may hand out one number before they heal the
// counter), so it reaches the member of that number here only if that
// member is the one on this server. (Lines without the fields, from before
// them: by number.)
bool ToEntry(const redis::Reply& e, const std::string& me, RoomEntry* out, std::string* id) {
  if (e.type != redis::Reply::Type::kArray || e.elements.size() != 2) return false;
  const redis::Reply& f = e.elements[1];
  Line line;
  line.set_seq(FieldNumber(f, "n"));
  int kind = 0;
  if (line.seq() == 0 || !absl::SimpleAtoi(Field(f, "k"), &kind) || !Line::Kind_IsValid(kind)) {
    return false;
  }
  line.set_kind(static_cast<Line::Kind>(kind));
  line.set_from(Field(f, "f"));
  line.set_text(Field(f, "t"));
  line.set_to(Field(f, "o"));
  int64_t ms = 0;
  if (absl::SimpleAtoi(Field(f, "ms"), &ms)) line.set_time_ms(ms);
  ServerMessage m;
  *m.mutable_line() = std::move(line);
  out->index = m.line().seq();
  out->bytes = std::make_shared<const std::string>(m.SerializeAsString());
  out->to = FieldNumber(f, "ti");
  out->from = FieldNumber(f, "fi");
  if (out->to != 0) {
    const std::string& ts = Field(f, "ts");
    const std::string& fs = Field(f, "fs");
    if (!fs.empty() && fs != me) out->from = 0;
    // The sender's copy only, or nobody's.
    if (!ts.empty() && ts != me) out->to = out->from != 0 ? out->from : kNobody;
  }
  *id = e.elements[0].str;
  return true;
}

std::string Ms(absl::Duration d) { return absl::StrCat(absl::ToInt64Milliseconds(d)); }

}  // namespace

absl::Status RedisRoomOptions::Validate() const {
  if (!NameOk(room, 64)) {
    return absl::InvalidArgumentError(absl::StrCat("room name \"", room.substr(0, 80),
                                                   "\" is invalid: use 1-64 of A-Z a-z 0-9 _ . -"));
  }
  if (!server_id.empty() && !NameOk(server_id, 40)) {
    return absl::InvalidArgumentError("server_id is invalid: use 1-40 of A-Z a-z 0-9 _ . -");
  }
  if (history_lines > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("history_lines ", history_lines, " is out of range (0 to 1000)"));
  }
  if (max_stream_lines < 100 || max_stream_lines < history_lines) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_stream_lines ", max_stream_lines, " is below 100 or history_lines"));
  }
  if (heartbeat <= absl::ZeroDuration() || alive_ttl < 3 * heartbeat) {
    return absl::InvalidArgumentError(absl::StrCat("alive_ttl ", absl::FormatDuration(alive_ttl),
                                                   " must be at least 3 heartbeats (",
                                                   absl::FormatDuration(heartbeat), ")"));
  }
  if (timeout <= absl::ZeroDuration() || max_backoff <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout and max_backoff must be positive");
  }
  if (limits.max_members < 1 || limits.max_members > kMaxMembersLimit ||
      limits.max_members_per_address < 1) {
    return absl::InvalidArgumentError("limits are out of range");
  }
  return absl::OkStatus();
}

RedisRoom::RedisRoom(const RedisRoomOptions& options)
    : options_(options), prefix_(absl::StrCat("udpmsg:chat:{", options.room, "}:")) {}

absl::StatusOr<std::shared_ptr<RedisRoom>> RedisRoom::Create(const RedisRoomOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  RedisRoomOptions o = options;
  if (o.server_id.empty()) o.server_id = RandomId();
  std::shared_ptr<RedisRoom> room(new RedisRoom(o));
  absl::StatusOr<std::unique_ptr<redis::Connection>> c =
      redis::Connection::Connect(o.endpoint, o.timeout);
  if (!c.ok()) return c.status();
  // Where the stream ends: this server delivers what comes after.
  absl::StatusOr<redis::Reply> tail =
      (*c)->Command({"XREVRANGE", room->Key("log"), "+", "-", "COUNT", "1"});
  if (!tail.ok()) return tail.status();
  if (tail->is_error()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Redis at ", o.endpoint.ToString(), " refused to read the room's stream: ", tail->str));
  }
  if (!tail->elements.empty()) {
    RoomEntry e;
    std::string id;
    if (ToEntry(tail->elements[0], o.server_id, &e, &id)) {
      room->last_id_ = id;
      room->last_n_ = e.index;
      room->last_index_.store(e.index);
    }
  }
  room->cmds_.push_back(std::make_unique<Cmd>());
  Cmd& cmd = *room->cmds_[0];
  cmd.conn = std::move(*c);
  std::lock_guard<std::mutex> lock(cmd.mu);
  // The connection itself, not Call: a refusal here is Create's error (with
  // the endpoint), not a loss to recover from.
  room->ConfirmAlive(SteadyNanos());  // (sent after this)
  absl::StatusOr<redis::Reply> alive =
      cmd.conn->Command({"SET", room->Key("alive:" + o.server_id), "1", "PX", Ms(o.alive_ttl)});
  if (!alive.ok()) return alive.status();
  if (alive->is_error()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Redis at ", o.endpoint.ToString(), " refused a write: ", alive->str));
  }
  absl::StatusOr<redis::Reply> add = cmd.conn->Command({"SADD", room->Key("servers"), o.server_id});
  if (!add.ok()) return add.status();
  // Tombstones of an earlier process with this server id: this one has none
  // of its members to take back.
  absl::StatusOr<redis::Reply> tombs =
      cmd.conn->Command({"DEL", room->Key("gone:" + o.server_id)});
  if (!tombs.ok()) return tombs.status();
  return room;
}

RedisRoom::~RedisRoom() { Stop(); }

void RedisRoom::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

int RedisRoom::AddShard(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mu_);
  cmds_.push_back(std::make_unique<Cmd>());
  return state_.AddShard(std::move(wake), last_index_.load(std::memory_order_relaxed));
}

void RedisRoom::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { ReaderLoop(); });
}

void RedisRoom::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (cmds_.empty()) return;  // Create failed before its connection
  Cmd& cmd = *cmds_[0];
  std::lock_guard<std::mutex> lock(cmd.mu);
  if (!available_.load() || cmd.conn == nullptr || cmd.conn->broken()) return;
  (void)cmd.conn->Pipeline({{"SREM", Key("servers"), options_.server_id},
                            {"DEL", Key("alive:" + options_.server_id)},
                            {"DEL", Key("who:" + options_.server_id)},
                            {"DEL", Key("gone:" + options_.server_id)}});
}

std::vector<std::string> RedisRoom::Eval(const char* script, absl::Time now,
                                         const std::vector<std::string>& keys,
                                         const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"EVAL", absl::StrCat(kPreamble, script),
                                   absl::StrCat(2 + keys.size()), Key("seq"), Key("log")};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.push_back(absl::StrCat(options_.max_stream_lines));
  argv.push_back(absl::StrCat(absl::ToUnixMillis(now)));
  argv.push_back(options_.server_id);
  argv.push_back(Key("alive:"));
  argv.push_back(prefix_);
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

RedisRoom::Cmd& RedisRoom::CmdFor(int shard) const {
  const size_t slot = shard >= 0 ? static_cast<size_t>(shard) + 1 : 0;
  return *cmds_[slot < cmds_.size() ? slot : 0];
}

absl::StatusOr<redis::Reply> RedisRoom::Call(Cmd& cmd, const std::vector<std::string>& argv) {
  if (!available_.load(std::memory_order_acquire)) {
    return absl::UnavailableError("the room's Redis is unreachable");
  }
  if (SteadyNanos() >= alive_until_ns_.load(std::memory_order_acquire)) {
    const absl::Status stalled = absl::UnavailableError(
        absl::StrCat("no heartbeat answered for alive_ttl (",
                     absl::FormatDuration(options_.alive_ttl), ")"));
    MarkLost(stalled, /*stalled=*/true);
    return stalled;
  }
  if (cmd.conn == nullptr || cmd.conn->broken() || cmd.stale.exchange(false)) {
    // A connection from before a loss may be dead without knowing it yet:
    // a fresh one (never a retry: the call may have run).
    cmd.conn.reset();
    absl::StatusOr<std::unique_ptr<redis::Connection>> c =
        redis::Connection::Connect(options_.endpoint, options_.timeout);
    if (!c.ok()) {
      MarkLost(c.status());
      return c.status();
    }
    cmd.conn = std::move(*c);
  }
  absl::StatusOr<redis::Reply> r;
  if (argv.size() >= 2 && argv[0] == "EVAL") {
    // The script's text once per Redis (SCRIPT LOAD), then its SHA-1: a
    // line costs Redis its arguments, not 1 KB of Lua. NOSCRIPT (a Redis
    // restarted, SCRIPT FLUSH) means it did not run: load it and go again.
    std::vector<std::string> sha_argv = argv;
    sha_argv[0] = "EVALSHA";
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::string sha;
      {
        std::lock_guard<std::mutex> lock(sha_mu_);
        auto it = shas_.find(argv[1]);
        if (it != shas_.end() && attempt == 0) sha = it->second;
      }
      if (sha.empty()) {
        absl::StatusOr<redis::Reply> loaded = cmd.conn->Command({"SCRIPT", "LOAD", argv[1]});
        if (!loaded.ok()) {
          r = loaded.status();
          break;
        }
        if (loaded->type != redis::Reply::Type::kString) {
          r = std::move(loaded);  // the error reply, as an EVAL would give it
          break;
        }
        sha = loaded->str;
        std::lock_guard<std::mutex> lock(sha_mu_);
        shas_[argv[1]] = sha;
      }
      sha_argv[1] = sha;
      r = cmd.conn->Command(sha_argv);
      if (!r.ok() || !r->is_error() || r->str.rfind("NOSCRIPT", 0) != 0) break;
    }
  } else {
    r = cmd.conn->Command(argv);
  }
  if (!r.ok()) {
    MarkLost(r.status());
    return r.status();
  }
  if (r->is_error() && RefusesWrites(r->str)) {
    // Not this call's fault: a Redis that takes no writes now is a lost one
    // (the leave waits, the members are told) until the reader is back.
    const absl::Status refused =
        absl::UnavailableError(absl::StrCat("Redis refused a write: ", r->str));
    MarkLost(refused);
    return refused;
  }
  if (r->is_error()) Log(absl::StrCat("Redis refused a call: ", r->str));
  return r;
}

void RedisRoom::MarkLost(const absl::Status& why, bool stalled) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    available_.store(false, std::memory_order_release);
    for (const std::unique_ptr<Cmd>& c : cmds_) c->stale.store(true, std::memory_order_release);
    if (lost_ || stopping_) return;
    lost_ = true;
    AnnounceLocked(
        stalled ? std::string("this server fell behind the room (the room may have taken it for "
                              "dead): lines are refused until it is back")
                : absl::StrCat("this server lost the room's store (Redis at ",
                               options_.endpoint.ToString(),
                               "): lines are refused until it is back"),
        &wakes);
  }
  Log(absl::StrCat(stalled ? "fell behind the room: " : "lost the room's Redis: ", why.message(),
                   "; reconnecting"));
  cv_.notify_all();
  Wake(wakes);
}

bool RedisRoom::ReplacedLocked(MemberId id, std::vector<const std::function<void()>*>* wakes) {
  std::optional<RoomState::Member> gone = state_.Erase(id);
  if (!gone.has_value()) return false;
  if (const auto* w = state_.Notice(gone->shard, {RoomNotice::Type::kReplaced, id, ""})) {
    wakes->push_back(w);
  }
  forget_.emplace_back(id, gone->nick);
  return true;
}

bool RedisRoom::ForgetReplaced(absl::Time now) {
  std::vector<std::pair<MemberId, std::string>> forget;
  {
    std::lock_guard<std::mutex> lock(mu_);
    forget.swap(forget_);
  }
  if (forget.empty()) return true;
  std::vector<std::vector<std::string>> calls;
  for (const auto& [id, nick] : forget) {
    calls.push_back(Eval(kForget, now,
                         {Key("nick:" + NickKey(nick)), Key("who:" + options_.server_id)},
                         {absl::StrCat(id), nick}));
  }
  absl::StatusOr<std::vector<redis::Reply>> r = WithoutErrorReplies(reader_->Pipeline(calls));
  if (!r.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      forget_.insert(forget_.end(), forget.begin(), forget.end());
    }
    return ReaderLost(r.status());
  }
  return true;
}

void RedisRoom::AnnounceLocked(const std::string& text,
                               std::vector<const std::function<void()>*>* wakes) {
  for (size_t i = 0; i < state_.shard_count(); ++i) {
    if (const auto* w = state_.Notice(static_cast<int>(i), {RoomNotice::Type::kAnnounce, 0, text});
        w != nullptr) {
      wakes->push_back(w);
    }
  }
}

Room::Joined RedisRoom::Join(int shard, absl::Time now, const JoinRequest& request) {
  std::vector<const std::function<void()>*> wakes;
  Joined j;
  Cmd& cmd = CmdFor(shard);
  std::lock_guard<std::mutex> cmd_lock(cmd.mu);
  MemberId replace = 0;
  size_t after = 0;   // members here after the join: announced up to the limit
  uint64_t seen = 0;  // the client's last line, as a stream number
  MemberId highest = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      j.result = Result::kClosed;
      return j;
    }
    const RoomState::Verdict v = state_.CheckJoin(request, now, options_.limits);
    j.result = v.result;
    j.holder = v.holder;
    replace = v.replace;
    if (j.result == Result::kOk && log_bytes_ > 2 * options_.limits.max_log_bytes) {
      j.result = Result::kBusy;
    }
    if (j.result != Result::kOk) return j;
    after = state_.members().size() + (replace == 0 ? 1 : 0);
    const int64_t n = static_cast<int64_t>(std::min<uint64_t>(
                          request.last_seq, std::numeric_limits<int64_t>::max())) -
                      offset_;
    seen = n > 0 ? static_cast<uint64_t>(n) : 0;
    highest = highest_id_;
  }
  const std::string new_hash = RoomState::TokenHash(request.new_token);
  absl::StatusOr<redis::Reply> r = Call(
      cmd, Eval(kJoin, now,
                {Key("nick:" + NickKey(request.nick)), Key("ids"), Key("who:" + options_.server_id),
                 Key("servers")},
                {request.nick, RoomState::TokenHash(request.resume_token), StoredHash(new_hash),
                 after <= options_.limits.announce_limit ? "1" : "0",
                 absl::StrCat(options_.history_lines), absl::StrCat(replace), absl::StrCat(seen),
                 absl::StrCat(highest)}));
  if (!r.ok() || r->type != redis::Reply::Type::kArray || r->elements.empty()) {
    j.result = Result::kUnavailable;
    return j;
  }
  if (r->elements[0].str == "taken") {
    j.result = Result::kNickTaken;
    return j;
  }
  if (r->elements.size() != 6) {
    j.result = Result::kUnavailable;
    return j;
  }
  j.id = static_cast<MemberId>(r->elements[1].integer);
  const std::string& rs = r->elements[3].str;
  uint64_t ri = 0;
  (void)absl::SimpleAtoi(r->elements[4].str, &ri);
  {
    std::lock_guard<std::mutex> lock(mu_);
    highest_id_ = std::max(highest_id_, j.id);
    j.start = static_cast<uint64_t>(r->elements[2].integer + offset_);
    const std::vector<redis::Reply>& hist = r->elements[5].elements;
    for (auto it = hist.rbegin(); it != hist.rend(); ++it) {
      RoomEntry e;
      std::string id;
      if (ToEntry(*it, options_.server_id, &e, &id)) {
        e.index = static_cast<uint64_t>(static_cast<int64_t>(e.index) + offset_);
        j.history.push_back(std::move(e));
      }
    }
    const MemberId gone =
        replace != 0 ? replace : (rs == options_.server_id && state_.Find(ri) != nullptr ? ri : 0);
    if (gone != 0) {
      ReplacedLocked(gone, &wakes);  // no leave line; its shard closes it
      j.replaced = gone;
    } else if (!rs.empty()) {
      j.replaced = ri;  // a member of another server: its server closes it
    }
    state_.Add(j.id, {request.nick, request.address_key, shard, new_hash});
  }
  j.roster = WhoLocked(cmd);
  Wake(wakes);
  return j;
}

std::vector<std::string> RedisRoom::LeaveCall(absl::Time now, const PendingLeave& l) const {
  return Eval(kLeave, now, {Key("nick:" + NickKey(l.nick)), Key("who:" + options_.server_id)},
              {absl::StrCat(l.id), l.nick, l.why, l.announce ? "1" : "0", l.token_hash});
}

uint64_t RedisRoom::Leave(int shard, absl::Time now, MemberId id, const std::string& why) {
  Cmd& cmd = CmdFor(shard);
  std::lock_guard<std::mutex> cmd_lock(cmd.mu);
  PendingLeave leave;
  uint64_t left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t before = state_.members().size();
    std::optional<RoomState::Member> gone = state_.Erase(id);
    left = state_.members().size();
    if (!gone.has_value()) return left;
    leave = PendingLeave{id, gone->nick, why.empty() && closed_ ? "server shutting down" : why,
                         before <= options_.limits.announce_limit,
                         StoredHash(gone->token_hash)};
    if (!available_.load()) {
      pending_leaves_.push_back(std::move(leave));  // at most one per member
      return left;
    }
  }
  absl::StatusOr<redis::Reply> r = Call(cmd, LeaveCall(now, leave));
  // (A refused write comes back not ok: it waits. Any other error reply
  // would fail the same way again: logged by Call, not queued.)
  if (!r.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_leaves_.push_back(std::move(leave));
  }
  return left;
}

Room::Result RedisRoom::Rename(int shard, absl::Time now, MemberId id, const std::string& nick) {
  Cmd& cmd = CmdFor(shard);
  std::lock_guard<std::mutex> cmd_lock(cmd.mu);
  std::string old;
  std::string hash;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const RoomState::Member* m = state_.Find(id);
    if (closed_ || m == nullptr) return Result::kClosed;
    const MemberId holder = state_.Holder(nick);
    if (holder != 0 && holder != id) return Result::kNickTaken;
    if (log_bytes_ > options_.limits.max_log_bytes) return Result::kBusy;
    old = m->nick;
    hash = StoredHash(m->token_hash);
  }
  absl::StatusOr<redis::Reply> r =
      Call(cmd, Eval(kRename, now,
                     {Key("nick:" + NickKey(nick)), Key("nick:" + NickKey(old)),
                      Key("who:" + options_.server_id)},
                     {absl::StrCat(id), old, nick, hash}));
  if (Unanswered(r)) return Result::kUnavailable;
  if (r->str == "taken") return Result::kNickTaken;
  std::lock_guard<std::mutex> lock(mu_);
  state_.Rename(id, nick);
  return Result::kOk;
}

Room::Result RedisRoom::Speaker(MemberId id, std::string* nick) const {
  std::lock_guard<std::mutex> lock(mu_);
  const RoomState::Member* m = state_.Find(id);
  if (closed_ || m == nullptr) return Result::kClosed;
  if (log_bytes_ > options_.limits.max_log_bytes) return Result::kBusy;
  *nick = m->nick;
  return Result::kOk;
}

Room::Result RedisRoom::Say(int shard, absl::Time now, MemberId id, bool me,
                            const std::string& text) {
  Cmd& cmd = CmdFor(shard);
  std::lock_guard<std::mutex> cmd_lock(cmd.mu);
  std::string nick;
  if (const Result may = Speaker(id, &nick); may != Result::kOk) return may;
  absl::StatusOr<redis::Reply> r =
      Call(cmd, Eval(kSay, now, {Key("who:" + options_.server_id)},
                     {absl::StrCat(me ? Line::ME : Line::SAY), nick, text, absl::StrCat(id)}));
  if (Unanswered(r)) return Result::kUnavailable;
  return Result::kOk;
}

Room::Result RedisRoom::Private(int shard, absl::Time now, MemberId id, const std::string& to,
                                const std::string& text) {
  Cmd& cmd = CmdFor(shard);
  std::lock_guard<std::mutex> cmd_lock(cmd.mu);
  std::string nick;
  if (const Result may = Speaker(id, &nick); may != Result::kOk) return may;
  if (!CheckNick(to).ok()) return Result::kNoSuchNick;
  absl::StatusOr<redis::Reply> r =
      Call(cmd, Eval(kPrivate, now, {Key("nick:" + NickKey(to)), Key("who:" + options_.server_id)},
                     {nick, text, absl::StrCat(id)}));
  if (Unanswered(r)) return Result::kUnavailable;
  if (r->str == "nosuch") return Result::kNoSuchNick;
  return Result::kOk;
}

bool RedisRoom::Close(int shard, absl::Time now) {
  (void)shard;
  (void)now;
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    closed_ = true;
    // The room goes on on other servers: only this server's members hear it.
    AnnounceLocked("server shutting down", &wakes);
  }
  Wake(wakes);
  return true;
}

Roster RedisRoom::WhoLocked(Cmd& cmd) {
  absl::StatusOr<redis::Reply> r =
      Call(cmd, Eval(kWho, absl::Now(), {Key("servers")}, {absl::StrCat(kMaxListedNicks)}));
  if (!r.ok() || r->type != redis::Reply::Type::kArray || r->elements.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    return LocalRosterLocked();
  }
  Roster roster;
  roster.count = static_cast<uint64_t>(r->elements[0].integer);
  std::vector<std::pair<uint64_t, std::string>> listed;
  for (size_t i = 1; i + 1 < r->elements.size(); i += 2) {
    uint64_t score = 0;
    (void)absl::SimpleAtoi(r->elements[i + 1].str, &score);
    listed.emplace_back(score, r->elements[i].str);
  }
  std::sort(listed.begin(), listed.end());
  for (auto& [score, nick] : listed) {
    if (roster.first.size() >= kMaxListedNicks) break;
    roster.first.push_back(std::move(nick));
  }
  return roster;
}

Roster RedisRoom::Who() const {
  auto* self = const_cast<RedisRoom*>(this);
  Cmd& cmd = CmdFor(-1);
  std::lock_guard<std::mutex> lock(cmd.mu);
  return self->WhoLocked(cmd);
}

void RedisRoom::Read(int shard, std::vector<RoomEntry>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  RoomState::Shard& s = state_.shard(shard);
  s.woken = false;
  // Indices increase along the log: start after this shard's cursor.
  auto first = std::upper_bound(log_.begin(), log_.end(), s.read,
                                [](uint64_t read, const RoomEntry& e) { return read < e.index; });
  out->insert(out->end(), first, log_.end());
  if (!log_.empty()) s.read = std::max(s.read, log_.back().index);
  const uint64_t oldest = state_.OldestRead();
  bool freed = false;
  while (!log_.empty() && log_.front().index <= oldest) {
    log_bytes_ -= log_.front().bytes->size();
    log_.pop_front();
    freed = true;
  }
  if (freed) cv_.notify_all();
}

void RedisRoom::ReaderLoop() {
  absl::Duration backoff = absl::Milliseconds(100);
  std::mt19937_64 jitter(std::random_device{}());
  const absl::Duration poll = std::min(options_.heartbeat, absl::Milliseconds(200));
  for (;;) {
    bool full = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) return;
      if (lost_ && reader_ != nullptr) reader_.reset();  // a shard's call failed: re-check
      full = log_bytes_ > 2 * options_.limits.max_log_bytes;
    }
    if (reader_ == nullptr) {
      absl::StatusOr<std::unique_ptr<redis::Connection>> c =
          redis::Connection::Connect(options_.endpoint, options_.timeout);
      if (c.ok() && (*c)->SetTimeout(options_.timeout + poll).ok()) {
        reader_ = std::move(*c);
        if (!Recover()) reader_.reset();
      } else if (!c.ok()) {
        MarkLost(c.status());
      }
      if (reader_ == nullptr) {
        std::uniform_real_distribution<double> spread(0.5, 1.0);
        const absl::Duration wait = backoff * spread(jitter);
        backoff = std::min(2 * backoff, options_.max_backoff);
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, absl::ToChronoMilliseconds(wait), [this] { return stopping_; });
        continue;
      }
      backoff = absl::Milliseconds(100);
    }
    const absl::Time now = absl::Now();
    if (now >= next_heartbeat_ && !Heartbeat(now)) continue;
    if (full) {
      // Lines the shards have not fanned out: wait for them (bounded), the
      // heartbeat going on (slow shards are not a stalled server).
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      continue;
    }
    absl::StatusOr<redis::Reply> r = reader_->Command(
        {"XREAD", "COUNT", "512", "BLOCK", Ms(poll), "STREAMS", Key("log"), last_id_});
    if (!r.ok()) {
      ReaderLost(r.status());
      continue;
    }
    if (r->type == redis::Reply::Type::kArray && !r->elements.empty()) {
      const redis::Reply& stream = r->elements[0];
      if (stream.elements.size() == 2) Deliver(stream.elements[1]);
    }
    ForgetReplaced(now);
  }
}

bool RedisRoom::Reclaim(absl::Time now, bool leaves_too, bool only_missing) {
  // No shard's call runs until the members are written back: a leave in
  // between (taking its tombstone, then this writing its nick back) would
  // leave a nick and a roster entry behind for a member that is gone. The
  // shards wait for their calls in flight and this pipeline (rare: once
  // per stall or loss of Redis, or a heartbeat that found its roster short;
  // that one writes back only the members missing from it). Every Cmd's
  // mutex, in slot order: the only place that holds more than one.
  std::vector<std::unique_lock<std::mutex>> shards;
  for (const std::unique_ptr<Cmd>& c : cmds_) shards.emplace_back(c->mu);
  // Members and leaves as this server knows them.
  std::vector<std::pair<MemberId, RoomState::Member>> members;
  std::vector<PendingLeave> leaves;
  {
    std::lock_guard<std::mutex> lock(mu_);
    members.assign(state_.members().begin(), state_.members().end());
    if (leaves_too) leaves = pending_leaves_;
  }
  // The tombstones kSweep keeps: the members' (their calls here take them,
  // so one there by the sweep is a reaper's since) and, without leaves_too,
  // those of leaves not written yet (the next Reclaim with leaves_too
  // writes them).
  std::vector<std::string> keep;
  for (const auto& member : members) keep.push_back(absl::StrCat(member.first));
  if (only_missing) {
    absl::StatusOr<redis::Reply> roster =
        reader_->Command({"ZRANGE", Key("who:" + options_.server_id), "0", "-1", "WITHSCORES"});
    if (!roster.ok() || roster->is_error()) {
      shards.clear();
      return ReaderLost(roster.ok() ? absl::UnavailableError(roster->str) : roster.status());
    }
    // Present: its number under its nick (a roster from an older copy of
    // Redis's data may hold the number under a nick since renamed).
    absl::flat_hash_map<MemberId, std::string> present;
    for (size_t i = 0; i + 1 < roster->elements.size(); i += 2) {
      MemberId id = 0;
      if (absl::SimpleAtoi(roster->elements[i + 1].str, &id)) {
        present[id] = roster->elements[i].str;
      }
    }
    members.erase(std::remove_if(members.begin(), members.end(),
                                 [&](const auto& m) {
                                   auto it = present.find(m.first);
                                   return it != present.end() && it->second == m.second.nick;
                                 }),
                  members.end());
  }
  std::vector<std::vector<std::string>> calls;
  for (const auto& [id, m] : members) {
    calls.push_back(Eval(kReclaim, now,
                         {Key("nick:" + NickKey(m.nick)), Key("who:" + options_.server_id)},
                         {absl::StrCat(id), StoredHash(m.token_hash), m.nick}));
  }
  for (const PendingLeave& l : leaves) calls.push_back(LeaveCall(now, l));
  if (!leaves_too) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const PendingLeave& l : pending_leaves_) keep.push_back(absl::StrCat(l.id));
  }
  calls.push_back(Eval(kSweep, now, {}, keep));
  absl::StatusOr<std::vector<redis::Reply>> r = WithoutErrorReplies(reader_->Pipeline(calls));
  if (!r.ok()) {
    shards.clear();
    return ReaderLost(r.status());
  }
  std::vector<const std::function<void()>*> wakes;
  size_t taken = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < members.size() && i < r->size(); ++i) {
      if ((*r)[i].str != "taken") continue;
      // Its nick went to someone else while this server was cut off.
      if (ReplacedLocked(members[i].first, &wakes)) ++taken;
    }
    pending_leaves_.erase(pending_leaves_.begin(),
                          pending_leaves_.begin() + static_cast<ptrdiff_t>(leaves.size()));
    if (leaves_too) {
      // Back, before the shards go on: a leave after this is written at
      // once, not queued for a loss that is over (and a loss a shard finds
      // after this is announced after this).
      lost_ = false;
      available_.store(true, std::memory_order_release);
      AnnounceLocked("this server reached the room's store again: lines flow again", &wakes);
    }
  }
  shards.clear();
  if (!members.empty() || !leaves.empty()) {
    Log(absl::StrCat(
        Plural(members.size() - taken, "member"), " re-registered in the room",
        taken > 0 ? absl::StrCat(", ", taken, " closed (their nicks went to other connections)")
                  : std::string()));
  }
  Wake(wakes);
  return true;
}

bool RedisRoom::Recover() {
  const absl::Time now = absl::Now();
  if (!Heartbeat(now)) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lost_) return true;  // the first connect: nothing to re-claim
  }
  // (Reclaim marks Redis back and tells the members, with the shards held.)
  if (!Reclaim(now, /*leaves_too=*/true)) return false;
  Log(absl::StrCat("reached the room's Redis at ", options_.endpoint.ToString(),
                   " again; reading on after ", last_id_));
  return true;
}

bool RedisRoom::ReaderLost(const absl::Status& why) {
  MarkLost(why);
  reader_.reset();
  return false;
}

int64_t RedisRoom::SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void RedisRoom::ConfirmAlive(int64_t sent_ns) {
  alive_until_ns_.store(sent_ns + absl::ToInt64Nanoseconds(options_.alive_ttl * 0.95),
                        std::memory_order_release);
}

bool RedisRoom::Heartbeat(absl::Time now) {
  next_heartbeat_ = now + options_.heartbeat;
  const int64_t sent = SteadyNanos();
  MemberId highest = 0;
  bool has_members = false;
  size_t members = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    members = state_.members().size();
    has_members = members > 0;
    highest = highest_id_;
  }
  // An error reply (a Redis refusing writes: -READONLY, -NOREPLICAS, still
  // -LOADING) refreshed nothing: a loss like any other.
  absl::StatusOr<std::vector<redis::Reply>> r = WithoutErrorReplies(reader_->Pipeline(
      {{"SET", Key("alive:" + options_.server_id), "1", "PX", Ms(options_.alive_ttl)},
       Eval(kHeal, now, {Key("ids"), Key("servers")},
            {absl::StrCat(last_n_), absl::StrCat(highest),
             "the room's store lost recent lines (Redis restarted without its data?): some lines "
             "may be missing"}),
       {"SMEMBERS", Key("servers")}}));
  if (!r.ok() || r->size() != 3) {
    return ReaderLost(r.ok() ? absl::UnavailableError("short reply") : r.status());
  }
  const redis::Reply& heal = (*r)[1];
  if (heal.elements.size() == 4) {
    if (heal.elements[0].integer == 1) {
      Log(absl::StrCat("the room's line counter was behind line ", last_n_,
                       ": Redis lost data; counters restored and the room told"));
    }
    // Not registered (reaped after a stall, or Redis lost its data), or
    // taken for dead meanwhile (tombstones: members settled by others,
    // before a reaper or after one that a join here re-registered): the
    // members come back into the roster, or are closed if their nicks went.
    // Or its roster holds fewer members than this server has: Redis lost
    // it (flushed, restarted without its data, evicted) and a join here
    // since made the server look registered. (Joins and leaves in flight
    // only ever make the roster larger than the count read above; a
    // takeover elsewhere not yet read makes it smaller, and Reclaim closes
    // that member, as reading the line would.) Its lines would otherwise
    // be refused for good (the scripts check the roster).
    const bool unregistered = heal.elements[1].integer == 1 && has_members;
    const bool buried = heal.elements[2].integer > 0;
    const bool short_roster = heal.elements[3].integer < static_cast<int64_t>(members);
    if ((unregistered || buried || short_roster) &&
        !Reclaim(now, /*leaves_too=*/false, /*only_missing=*/!unregistered && !buried)) {
      return false;
    }
  }
  // Confirmed (and its members written back, if it had been taken for dead).
  ConfirmAlive(sent);
  // Servers whose alive key is gone: the first live server to see it
  // announces their members' leaves.
  for (const redis::Reply& s : (*r)[2].elements) {
    if (s.str == options_.server_id) continue;
    absl::StatusOr<redis::Reply> reaped = reader_->Command(
        Eval(kReap, now, {Key("servers")}, {s.str, absl::StrCat(options_.limits.announce_limit)}));
    if (!reaped.ok()) {
      return ReaderLost(reaped.status());
    }
    if (reaped->type == redis::Reply::Type::kInteger && reaped->integer >= 0) {
      Log(absl::StrCat("server ", s.str, " stopped answering: ",
                       Plural(static_cast<size_t>(reaped->integer), "member"),
                       " of it left the room"));
    }
  }
  return true;
}

void RedisRoom::Deliver(const redis::Reply& entries) {
  std::vector<const std::function<void()>*> wakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const redis::Reply& raw : entries.elements) {
      RoomEntry e;
      std::string id;
      if (!ToEntry(raw, options_.server_id, &e, &id)) {
        if (raw.elements.size() == 2) last_id_ = raw.elements[0].str;
        continue;
      }
      const uint64_t n = e.index;
      if (last_n_ != 0 && n <= last_n_) {
        // The numbers went back: Redis lost its data (restarted without it).
        offset_ = static_cast<int64_t>(last_index_.load()) - static_cast<int64_t>(n) + 1;
        AnnounceLocked(
            "the room's store lost its history (Redis restarted without its data): "
            "lines may have been lost",
            &wakes);
      } else if (last_n_ != 0 && n > last_n_ + 1) {
        AnnounceLocked(absl::StrCat("this server missed ", n - last_n_ - 1,
                                    " lines (the stream was trimmed before it read them)"),
                       &wakes);
      }
      last_n_ = n;
      last_id_ = id;
      e.index = static_cast<uint64_t>(static_cast<int64_t>(n) + offset_);
      // A member of this server whose nick a reconnect on another server took.
      uint64_t ri = 0;
      if (Field(raw.elements[1], "rs") == options_.server_id &&
          absl::SimpleAtoi(Field(raw.elements[1], "ri"), &ri)) {
        ReplacedLocked(ri, &wakes);
      }
      log_bytes_ += e.bytes->size();
      log_.push_back(std::move(e));
      last_index_.store(log_.back().index, std::memory_order_release);
      lines_read_.fetch_add(1, std::memory_order_acq_rel);
    }
    state_.WakeOthers(-1, &wakes);
  }
  Wake(wakes);
}

}  // namespace udpmsg::chat
