-- shopstream similarity store: one script, several commands (docs/recommendations.md).
-- The `-- #include FILE` lines are replaced by the files next to this one when the script is
-- loaded (models/similarity/store.py load_lua), so Redis runs one script; line numbers in Redis
-- errors count lines of that assembled script.
-- KEYS[1] = <base>meta where <base> = "{prefix}:" (one hash tag: every key is in one slot).
-- ARGV[1] = command (see COMMANDS at the end), ARGV[2] = <base>,
-- ARGV[3] = the configuration as one JSON object (models/similarity/store.py RecConfig.as_json),
-- ARGV[4..] = the command's arguments.

-- == configuration ============================================================================
local meta = KEYS[1]
local cmd = ARGV[1]
local base = ARGV[2]
local cfg = cjson.decode(ARGV[3])
local A0 = 4
local N = cfg.session_window          -- earlier session items a new click is paired with
local W = cfg.score_items             -- most recent session items that score candidates
local HL = cfg.half_life_ms           -- half-life of every count, event time
local M, SLACK = cfg.max_neighbours, cfg.prune_slack   -- neighbours kept (+ slack before a prune)
local TW = cfg.weights                -- event-type weights: view, add_to_cart, purchase
local FW, FD = cfg.forward, cfg.forward_decay     -- sim(a, b) += FW / d^FD, a before b
local BW, BD = cfg.backward, cfg.backward_decay   -- sim(b, a) += BW / d^BD
local PN = cfg.pair_norm               -- a click's pair increments are divided by H^PN (learn)
-- TD: a pair's increments are multiplied by exp(-gap / TD), gap = the click's time minus the
-- latest click of the earlier item in the session (0 = off: no times are stored)
local TD = cfg.pair_time_decay_ms or 0
local RD = cfg.recency_decay          -- weight of the p-th most recent session item: 1 / p^RD
local ALPHA, BETA = cfg.alpha, cfg.beta           -- asymmetric cosine normalisation
local RB = cfg.repeat_boost           -- boost of an item already in the session
local STTL, UTTL = cfg.session_ttl_ms, cfg.user_ttl_ms -- key retention (0 = forever)
local ITTL = cfg.item_ttl_ms or 0     -- an item's neighbour set expires unless it is seen again
local L = cfg.score_neighbours        -- heaviest neighbours read per session item
local SKIP = cfg.skiplist_neighbours
local REBASE = cfg.rebase_half_lives  -- move the decay origin t0 after this many half-lives
-- DEDUP: a session's state lists distinct items (a re-click moves the item to the front), so
-- repeats fill neither the pairing window nor the scoring window.
local DEDUP = cfg.dedup_sessions
-- Two hops from the current item: H2 weight (0 = off), H2B heaviest neighbours followed, H2L
-- heaviest read from each of their rows; RB4 flat boost (times RB) of the session items older
-- than the W scored ones.
local H2, H2B, H2L, RB4 = cfg.two_hop, cfg.two_hop_neighbours, cfg.two_hop_row, cfg.older_boost
-- Session-neighbourhood signal (STAN-like, see knn()): KW its weight (0 = off), KI query items
-- whose recent-session lists are read, KS sessions read per such item, KK neighbours kept,
-- KKEEP sessions remembered per item (bound; KSLACK extra before a trim), KSPW / KSNH (ms) /
-- KINH the position, recency and item-distance decays, KMIN fewest neighbours for the signal
-- to count (a handful is noise), KWIN widest distance of a scored item from the matched one.
local KW, KI, KS, KK = cfg.knn_weight, cfg.knn_items, cfg.knn_sessions, cfg.knn_neighbours
local KKEEP, KSPW, KSNH, KINH = cfg.knn_keep, cfg.knn_position_decay, cfg.knn_recency_ms, cfg.knn_item_decay
local KMIN, KWIN = cfg.knn_min_neighbours, cfg.knn_item_window
local KSLACK = math.max(1, math.floor(KKEEP / 10))
-- Every neighbour set holds this member (score 0, below every real weight). At 80 bytes it is
-- longer than zset-max-listpack-value (64), so Redis keeps the set as a skiplist: O(log n)
-- ZINCRBY instead of a listpack scan that parses every float score (10-30x slower).
-- Without it (SKIP false) small sets stay listpacks: ~2.5x less memory, slower updates.
local SENT = '\0shopstream:skiplist' .. string.rep('.', 60)
local POP, CAT, OFF = base .. 'pop', base .. 'cat', base .. 'off'

-- Popularity counts read or written during this call (item -> raw count, false = absent):
-- a batch scores the same popular candidates again and again. Exact: filled from ZMSCORE and
-- kept current from ZINCRBY's reply, so results are identical to reading Redis every time.
-- CARD: neighbour-set cardinalities of this call (see learn). Both emptied by a rebase.
local PC, CARD = {}, {}
-- Rows read during this call, parsed: ROWS[a] = {members, scores, n} of the n heaviest of n:a,
-- ISC[i] = {sessions, times} of the KS most recent of is:<i>. Learning drops the entry of every
-- key it writes and a rebase empties ROWS, so a read always sees the current key (exact, like
-- PC).
local ROWS, ISC = {}, {}
local function pop_counts(items, first, last)
  local out, missing = {}, {}
  for j = first, last do
    local c = PC[items[j]]
    if c == nil then missing[#missing + 1] = items[j] end
  end
  if #missing > 0 then
    local got = redis.call('ZMSCORE', POP, unpack(missing))
    for j = 1, #missing do PC[missing[j]] = tonumber(got[j]) or false end
  end
  for j = first, last do out[j - first + 1] = PC[items[j]] end
  return out
end

-- == decay ====================================================================================
local t0 = tonumber(redis.call('HGET', meta, 't0'))
local clock = tonumber(redis.call('HGET', meta, 'clock'))

-- Decay without rescans: counts are added with weight 2^((ts - t0)/HL), which grows with event
-- time; dividing by the factor of "now" gives counts decayed with half-life HL.
local function growth(ts)
  if not t0 then return 1 end
  return 2 ^ ((ts - t0) / HL)
end
-- A weight below this is not counted: a record so old (relative to t0) that its weight
-- underflows would add 0 and leave a zero count, which scoring divides by.
local MIN_G = 1e-300

-- The factor would overflow a double after 1024 half-lives (2.8 years with a 1-day half-life),
-- so t0 moves forward before that: every stored count is multiplied by 2^(-(t - t0)/HL), which
-- leaves every decayed value (count / growth(now)) as it was. Counts that fall below MIN_G are
-- fully decayed and dropped (a neighbour set with no member left is deleted). Blocks Redis
-- for a pass over all counts, once every REBASE half-lives of event time.
local function rescale(key, factor, keep)
  local rows = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local args, gone, left = {}, {}, 0
  for j = 1, #rows, 2 do
    local m, v = rows[j], tonumber(rows[j + 1]) * factor
    if m == keep then
      left = left  -- the skiplist sentinel keeps its score 0
    elseif v >= MIN_G then
      args[#args + 1] = v; args[#args + 1] = m; left = left + 1
      if #args >= 1000 then redis.call('ZADD', key, unpack(args)); args = {} end
    else
      gone[#gone + 1] = m
      if #gone >= 500 then redis.call('ZREM', key, unpack(gone)); gone = {} end
    end
  end
  if #args > 0 then redis.call('ZADD', key, unpack(args)) end
  if #gone > 0 then redis.call('ZREM', key, unpack(gone)) end
  if left == 0 then redis.call('DEL', key) end
end

local function rebase(new_t0)
  local factor = 2 ^ (-(new_t0 - t0) / HL)
  rescale(POP, factor, nil)
  local cursor = '0'
  repeat
    local page = redis.call('SCAN', cursor, 'MATCH', base .. 'n:*', 'COUNT', 1000)
    cursor = page[1]
    for _, key in ipairs(page[2]) do rescale(key, factor, SENT) end
  until cursor == '0'
  t0 = new_t0
  redis.call('HSET', meta, 't0', t0)
  PC, CARD, ROWS = {}, {}, {}
end

-- == learning =================================================================================
-- Session state: the last max(N, W) items, most recent first, stored as one string
-- "i1\0i2\0..."; with TD > 0 followed by "\0\0" and the event time of each item's latest
-- click, "t1\0t2\0..." ('-' = unknown: a list stored before times were kept). Item ids are
-- never empty, so the first "\0\0" is the separator. Read once per script call, kept in SESS
-- (the times as the list's field t, false = unknown), written back by flush_sessions().
local SESS, DIRTY = {}, {}
-- Writes that only the final state of a call needs, done once per key by finish(): the item
-- TTLs to renew (EXP: key -> true, EXPS in order) and the items' categories (CATS: item ->
-- category, CATL in order; the last click's category wins, as with one HSET per click).
-- Nothing in a call reads them back (scoring inside learn/eval never filters by category, and
-- a script's clock is frozen, so a later PEXPIRE sets the same expiry time).
local EXP, EXPS, CATS, CATL = {}, {}, {}, {}
local function renew(key)
  if not EXP[key] then EXP[key] = true; EXPS[#EXPS + 1] = key end
end
-- A stored session value (or nil) -> its items (with .t, the times, when they were stored).
local function split_items(raw)
  local items = {}
  if not raw then return items end
  local cut = string.find(raw, '\0\0', 1, true)
  for it in string.gmatch(cut and string.sub(raw, 1, cut - 1) or raw, '[^%z]+') do
    items[#items + 1] = it
  end
  if cut then
    local times = {}
    for t in string.gmatch(string.sub(raw, cut + 2), '[^%z]+') do
      times[#times + 1] = tonumber(t) or false
    end
    if #times == #items then items.t = times end
  end
  return items
end

local function session_items(sk)
  local items = SESS[sk]
  if items then return items end
  items = split_items(redis.call('GET', sk))
  SESS[sk] = items
  return items
end

local function flush_sessions()
  for j = 1, #DIRTY do
    local sk = DIRTY[j]
    local items = SESS[sk]
    local value = table.concat(items, '\0')
    if TD > 0 and items.t then
      local times = {}
      for j = 1, #items do
        local t = items.t[j]
        times[j] = t and string.format('%.0f', t) or '-'
      end
      value = value .. '\0\0' .. table.concat(times, '\0')
    end
    if STTL > 0 then redis.call('SET', sk, value, 'PX', STTL) else redis.call('SET', sk, value) end
  end
end

-- == deferred row writes ======================================================================
-- A click's neighbour-row increments and its popularity increment are recorded here and
-- written by flush_rows() before anything reads a row or a count (score(), a rebase) and at
-- the end of the call: a key that a call increments many times (a batch of a small catalog's
-- clicks: ~10 times per row in the bench) costs one read and one write instead of one
-- ZINCRBY per click. Exact: each key's final state depends only on its own increments, in
-- click order (the same double additions as ZINCRBY), and a key that could reach its prune
-- point inside the call is written click by click, as learning did before (touch()). A key
-- incremented once is written with ZADD XX INCR (and a plain ZADD if the member is new).
-- PEND[key] = {members, increments, clicks} in click order; PKEYS: keys in first-touch order.
local PEND, PKEYS, CLICK = {}, {}, 0
local PPM, PPV = {}, {}  -- popularity: item, growth-weighted increment, in click order

local function pend(key, member, inc)
  local p = PEND[key]
  if not p then p = {{}, {}, {}}; PEND[key] = p; PKEYS[#PKEYS + 1] = key end
  local n = #p[1] + 1
  p[1][n], p[2][n], p[3][n] = member, inc, CLICK
end

-- One click's new members of a neighbour set: its cardinality (CARD, sentinel included),
-- the sentinel and TTL of a set the click created, the prune past M + SLACK members.
local function touch(key, added)
  local card = CARD[key]
  if card then
    card = card + added
  else
    card = redis.call('ZCARD', key)
    if card == added then  -- the set was just created: its TTL, and the sentinel
      if ITTL > 0 then renew(key) end
      if SKIP then
        redis.call('ZADD', key, 0, SENT)
        card = card + 1
      end
    end
  end
  local extra = 0
  if SKIP then extra = 1 end
  if card - extra > M + SLACK then
    redis.call('ZREMRANGEBYRANK', key, extra, card - 1 - M)
    card = M + extra
  end
  CARD[key] = card
end

-- Increments ms[i] += vs[i] (distinct members) of key; returns how many members are new.
-- Exactly: a ZINCRBY reply equal to the increment does not tell a new member from one whose
-- score was 0 or negligible next to it (a pair learned hours apart, time-decayed to ~1e-20);
-- counting such a member as new made CARD one too high and pruned a member too early.
local function add_members(key, ms, vs, first, last)
  if first == last then  -- ZADD XX INCR adds as ZINCRBY does, and only to a member that exists
    if redis.call('ZADD', key, 'XX', 'INCR', vs[first], ms[first]) then return 0 end
    redis.call('ZADD', key, vs[first], ms[first])
    return 1
  end
  local old = redis.call('ZMSCORE', key, unpack(ms, first, last))
  local args, added = {}, 0
  for j = first, last do
    local o = old[j - first + 1]
    if o then args[#args + 1] = tonumber(o) + vs[j] else args[#args + 1] = vs[j]; added = added + 1 end
    args[#args + 1] = ms[j]
  end
  redis.call('ZADD', key, unpack(args))
  return added
end

-- A key's increments click by click (each click's members are distinct), as learn() wrote them.
local function write_by_click(key, p)
  local ms, vs, cs = p[1], p[2], p[3]
  local first = 1
  while first <= #ms do
    local last = first
    while last < #ms and cs[last + 1] == cs[first] do last = last + 1 end
    local added = add_members(key, ms, vs, first, last)
    if added > 0 then touch(key, added) end
    first = last + 1
  end
end

local function flush_key(key, p)
  local ms, vs = p[1], p[2]
  if #ms == 1 then return write_by_click(key, p) end
  local distinct, at = {}, {}
  for j = 1, #ms do
    if not at[ms[j]] then distinct[#distinct + 1] = ms[j]; at[ms[j]] = #distinct end
  end
  local old = {}
  for j = 1, #distinct, 1000 do
    local got = redis.call('ZMSCORE', key, unpack(distinct, j, math.min(j + 999, #distinct)))
    for q = 1, #got do old[j + q - 1] = got[q] end
  end
  local new = 0
  for j = 1, #distinct do if not old[j] then new = new + 1 end end
  local card, created = CARD[key], false
  if new > 0 and not card then
    card = redis.call('ZCARD', key)
    created = card == 0
    if created and SKIP then card = card + 1 end
  end
  local extra = 0
  if SKIP then extra = 1 end
  if new > 0 and card + new - extra > M + SLACK then  -- it could be pruned within the call
    return write_by_click(key, p)
  end
  local sum = {}
  for j = 1, #distinct do sum[j] = tonumber(old[j]) or 0 end
  for j = 1, #ms do local q = at[ms[j]]; sum[q] = sum[q] + vs[j] end
  for j = 1, #distinct, 500 do
    local args = {}
    for q = j, math.min(j + 499, #distinct) do
      args[#args + 1] = sum[q]; args[#args + 1] = distinct[q]
    end
    redis.call('ZADD', key, unpack(args))
  end
  if new > 0 then  -- touch(): a set created here gets its TTL and sentinel as click by click
    if not created then CARD[key] = card end  -- the size before; touch() adds the new ones
    touch(key, new)
  end
end

local function flush_rows()
  for j = 1, #PKEYS do flush_key(PKEYS[j], PEND[PKEYS[j]]) end
  if #PPM > 0 then
    for j = 1, #PPM, 1000 do pop_counts(PPM, j, math.min(j + 999, #PPM)) end  -- fills PC
    local order, listed = {}, {}
    for j = 1, #PPM do  -- ZINCRBY's addition, click by click: 0 + g for an absent item
      local c = PPM[j]
      PC[c] = (PC[c] or 0) + PPV[j]
      if not listed[c] then listed[c] = true; order[#order + 1] = c end
    end
    for j = 1, #order, 500 do
      local args = {}
      for q = j, math.min(j + 499, #order) do
        args[#args + 1] = PC[order[q]]; args[#args + 1] = order[q]
      end
      redis.call('ZADD', POP, unpack(args))
    end
  end
  PEND, PKEYS, PPM, PPV = {}, {}, {}, {}
end

-- #include neighbourhood.lua

local function learn(etype, user, session, item, category, ts)
  local w = TW[etype]
  if not w or item == '' then return end
  -- the session separator (NUL) inside an id would inject items into the session list; the
  -- worker's validation refuses such ids, this keeps any other caller from doing it
  if string.find(item, '\0', 1, true) then return end
  if etype == 'purchase' then
    local ub = base .. 'ub:' .. user
    redis.call('SADD', ub, item)
    if UTTL > 0 then redis.call('PEXPIRE', ub, UTTL) end
  end
  local g = w * growth(ts)
  local counted = g >= MIN_G  -- else fully decayed: the session learns it, counts do not
  local sk = base .. 's:' .. session
  local prev = session_items(sk)
  local times = prev.t
  if TD > 0 and not times then  -- a new session, or one stored without times
    times = {}
    for j = 1, #prev do times[j] = false end
    prev.t = times
  end
  -- sim(a, item) += FW / d^FD (forward) and sim(item, a) += BW / d^BD (backward), for the
  -- earlier items a at distance d <= N, summed per distinct a (one call per key), all times
  -- g / H^PN with H = sum_d FW / d^FD over those d: the click's pair mass is bounded; with
  -- TD > 0 each pair also times exp(-gap / TD), gap = ts - the time of a's latest click
  local fwd, order, bwd, border = {}, {}, {}, {}
  local npair = counted and math.min(#prev, N) or 0
  local gp = g
  if PN > 0 and npair > 0 then
    local h = 0
    for d = 1, npair do h = h + FW / d ^ FD end
    if h > 0 then gp = g / h ^ PN end
  end
  for d = 1, npair do
    local a = prev[d]
    local gd = gp
    if TD > 0 and times[d] then gd = gp * math.exp(-math.max(ts - times[d], 0) / TD) end
    if not fwd[a] then fwd[a] = 0; order[#order + 1] = a end
    fwd[a] = fwd[a] + FW / d ^ FD * gd
    if a ~= item and BW > 0 then
      if not bwd[a] then bwd[a] = 0; border[#border + 1] = a end
      bwd[a] = bwd[a] + BW / d ^ BD * gd
    end
  end
  if #border > 0 then ROWS[item] = nil end
  CLICK = CLICK + 1
  for j = 1, #order do
    local a = order[j]
    ROWS[a] = nil
    pend(base .. 'n:' .. a, item, fwd[a])
  end
  local ni = base .. 'n:' .. item
  for j = 1, #border do
    local a = border[j]
    pend(ni, a, bwd[a])
  end
  if counted then PPM[#PPM + 1] = item; PPV[#PPV + 1] = g end
  if ITTL > 0 then renew(ni) end
  if not DIRTY[sk] then DIRTY[sk] = true; DIRTY[#DIRTY + 1] = sk end
  local fresh = #prev == 0
  if DEDUP then
    for j = 1, #prev do
      if prev[j] == item then
        table.remove(prev, j)
        if times then table.remove(times, j) end
        break
      end
    end
  end
  table.insert(prev, 1, item)
  if times then table.insert(times, 1, ts) end
  local keep = math.max(N, W)
  while #prev > keep do
    local gone = prev[#prev]
    prev[#prev] = nil
    if times then times[#times] = nil end
    if KW > 0 then
      local still = false
      for j = 1, #prev do if prev[j] == gone then still = true; break end end
      if not still then unlist(session, gone) end
    end
  end
  if KW > 0 then list_click(user, session, item, ts) end
  if fresh then  -- a new session: remember it for forget_user
    local us = base .. 'us:' .. user
    redis.call('SADD', us, session)
    if UTTL > 0 then redis.call('PEXPIRE', us, UTTL) end
  end
  if category ~= '' then
    if not CATS[item] then CATL[#CATL + 1] = item end
    CATS[item] = category
  end
end

-- == scoring ==================================================================================
-- #include scoring.lua

-- Learn records {offset, type, user, session, item, category, ts[, target]} of one
-- topic:partition in offset order, past the stored offset only (the fence). With k, first
-- rank each record's target (eval). Returns the number applied; fills ranks/covered.
local function run(field, records, k, ranks, covered, cov)
  local stored = tonumber(redis.call('HGET', OFF, field) or '-1')
  local applied, last = 0, stored
  for i = 1, #records do
    local r = records[i]
    local offset = tonumber(r[1])
    if offset > stored and offset > last then
      local etype, user, session, item = r[2], r[3], r[4], r[5]
      local ts, target = tonumber(r[7]), r[8]
      if not t0 then t0 = ts; redis.call('HSET', meta, 't0', ts) end
      if not clock or ts > clock then clock = ts end
      if (clock - t0) / HL > REBASE then flush_rows(); rebase(clock) end
      if k and target ~= '' then
        -- the session as learning will leave it: this click first, then the stored list
        local items, keep = {item}, math.max(N, W)
        local prev = session_items(base .. 's:' .. session)
        for j = 1, #prev do
          if #items >= keep then break end
          if not (DEDUP and prev[j] == item) then items[#items + 1] = prev[j] end
        end
        local top = score(items, growth(clock), k, always, true, session, ts)
        local rank = 0
        for j = 1, #top do
          local c = top[j][1]
          if rank == 0 and c == target then rank = j end
          if not cov[c] then cov[c] = true; covered[#covered + 1] = c end
        end
        ranks[#ranks + 1] = rank
      end
      learn(etype, user, session, item, r[6], ts)
      applied, last = applied + 1, offset
    end
  end
  if applied > 0 then redis.call('HSET', OFF, field, last) end
  return applied
end

local function finish(applied)
  if applied > 0 then
    flush_rows()
    flush_sessions()
    for j = 1, #EXPS do redis.call('PEXPIRE', EXPS[j], ITTL) end
    for j = 1, #CATL, 500 do
      local args = {}
      for q = j, math.min(j + 499, #CATL) do
        local item = CATL[q]
        args[#args + 1] = item; args[#args + 1] = CATS[item]
      end
      redis.call('HSET', CAT, unpack(args))
    end
    redis.call('HSET', meta, 'clock', clock)
  end
end

-- == commands =================================================================================
-- Each takes its arguments from ARGV[A0..]; records are one JSON encoding everywhere:
-- [offset, type, user, session, item, category, ts(, target)].
local COMMANDS = {}

-- The guard of a worker's learn call ('' = none): JSON {"epoch": e, "owners": {field: token}}.
-- epoch: the value of <base>epoch when the worker started (written once per store): missing
-- or different means Redis lost its data, and learning on would silently start over.
-- owners: per "topic:partition", the token the worker got when it was assigned the
-- partition (<base>owners): another token means the partition has moved on (a zombie).
-- Returns an error text, or nil when the call may go on.
local function refused(raw)
  if raw == '' then return nil end
  local g = cjson.decode(raw)
  if g.epoch and redis.call('GET', base .. 'epoch') ~= g.epoch then
    return 'EPOCH the store epoch ' .. g.epoch .. ' is gone: Redis lost its data'
  end
  if g.owners then
    for field, token in pairs(g.owners) do
      local owner = redis.call('HGET', base .. 'owners', field)
      if owner ~= token then
        return 'FENCED ' .. field .. ' now belongs to ' .. tostring(owner) .. ', not ' .. token
      end
    end
  end
  return nil
end

-- learn: the guard (above), one JSON array of [field, records] groups, one per
-- topic:partition (each fenced by its own stored offset); optionally a JSON array
-- [k, [[user, session], ...]]: the recommendations to score after learning (purchased items
-- excluded), so the worker needs no 'rec' call per batch. Returns applied, or
-- {applied, recommendations}.
function COMMANDS.learn()
  local why = refused(ARGV[A0])
  if why then return redis.error_reply(why) end
  local applied = 0
  local groups = cjson.decode(ARGV[A0 + 1])
  for g = 1, #groups do applied = applied + run(groups[g][1], groups[g][2]) end
  finish(applied)
  if not ARGV[A0 + 2] then return applied end
  local want = cjson.decode(ARGV[A0 + 2])
  local k, requests, gnow, out = want[1], want[2], growth(clock or 0), {}
  for i = 1, #requests do
    out[#out + 1] = recommend(requests[i][1], requests[i][2], '1', '', k, gnow)
  end
  return {applied, out}
end

-- eval: field, k, JSON records with a target each: score-then-learn every record in order.
-- Returns {applied, ranks (1-based, 0 = not in the top k), items shown}.
function COMMANDS.eval()
  local field, k = ARGV[A0], tonumber(ARGV[A0 + 1])
  local records = cjson.decode(ARGV[A0 + 2])
  local ranks, covered = {}, {}
  local applied = run(field, records, k, ranks, covered, {})
  finish(applied)
  return {applied, ranks, covered}
end

-- rec: k, then a JSON array of [user, session, exclude_purchased (0/1), category ('' = any)].
function COMMANDS.rec()
  local k = tonumber(ARGV[A0])
  local gnow = growth(clock or 0)
  local out = {}
  for _, r in ipairs(cjson.decode(ARGV[A0 + 1])) do
    out[#out + 1] = recommend(r[1], r[2], tostring(r[3]), r[4], k, gnow)
  end
  return out
end

-- sim: item, k[, category]: the item's nearest neighbours (only that category's if given).
function COMMANDS.sim()
  local item, k, category = ARGV[A0], tonumber(ARGV[A0 + 1]), ARGV[A0 + 2] or ''
  local keep = function(c)
    return c ~= item and (category == '' or redis.call('HGET', CAT, c) == category)
  end
  return flat(score({item}, growth(clock or 0), k, keep, false))
end

-- pop: k: decayed trending items.
function COMMANDS.pop()
  local k = tonumber(ARGV[A0])
  local gnow = growth(clock or 0)
  local rows = redis.call('ZRANGE', POP, 0, k - 1, 'REV', 'WITHSCORES')
  for j = 2, #rows, 2 do rows[j] = tostring(tonumber(rows[j]) / gnow) end
  return rows
end

-- forget: user: delete the user's session and purchase keys and take the user's sessions out
-- of the item -> sessions index; returns how many keys were deleted.
function COMMANDS.forget()
  local user = ARGV[A0]
  local us = base .. 'us:' .. user
  local sessions = redis.call('SMEMBERS', us)
  local n = forget_listings(user, sessions)
  for _, s in ipairs(sessions) do n = n + redis.call('DEL', base .. 's:' .. s) end
  return n + redis.call('DEL', us, base .. 'ub:' .. user)
end

local handler = COMMANDS[cmd]
if not handler then return redis.error_reply('unknown command ' .. tostring(cmd)) end
return handler()

