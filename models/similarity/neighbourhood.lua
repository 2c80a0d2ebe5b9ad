-- Session neighbourhood of the similarity store (included by similarity.lua, see load_lua):
-- the item -> recent sessions index `is:<item>` that learning maintains, and the STAN-like
-- neighbourhood scores that score() mixes in when KW > 0 (docs/recommendations.md).
--
-- Keys: `is:<item>` zset session -> event time of its latest click on the item (at most
-- KKEEP + KSLACK members, TTL STTL); `ui:<user>` set of the items under which the user's
-- sessions are listed (TTL UTTL), so that forget_user reaches every listing even after the
-- session's own key has expired.

-- Invariant: is:<x> lists a session only while x is in the session's stored list; learning
-- calls this for an item that left the list.
local function unlist(session, gone)
  local gk = base .. 'is:' .. gone
  ISC[gone] = nil
  if redis.call('ZREM', gk, session) == 1 and CARD[gk] then CARD[gk] = CARD[gk] - 1 end
end

-- item -> its sessions, scored by the event time of their latest click on it; the oldest are
-- trimmed beyond KKEEP + KSLACK (ZADD replies 1 only for a new member, which is also when the
-- user's ui: set learns the item).
local UI = {}  -- users whose ui: TTL this call already refreshed
local function list_click(user, session, item, ts)
  local isk = base .. 'is:' .. item
  ISC[item] = nil
  if redis.call('ZADD', isk, ts, session) == 1 then
    local card = (CARD[isk] or redis.call('ZCARD', isk) - 1) + 1
    if card > KKEEP + KSLACK then
      redis.call('ZREMRANGEBYRANK', isk, 0, card - KKEEP - 1)
      card = KKEEP
    end
    CARD[isk] = card
    if STTL > 0 then redis.call('PEXPIRE', isk, STTL) end
    local ui = base .. 'ui:' .. user
    redis.call('SADD', ui, item)
    if UTTL > 0 and not UI[user] then UI[user] = true; redis.call('PEXPIRE', ui, UTTL) end
  end
end

-- forget: the user's sessions leave every is: set they are listed in; returns 1 if the user
-- had listings (the ui: key deleted), else 0.
local function forget_listings(user, sessions)
  local ui = base .. 'ui:' .. user
  local items = redis.call('SMEMBERS', ui)
  if #items == 0 then return 0 end
  for _, it in ipairs(items) do
    for j = 1, #sessions, 1000 do
      redis.call('ZREM', base .. 'is:' .. it, unpack(sessions, j, math.min(j + 999, #sessions)))
    end
  end
  return redis.call('DEL', ui)
end

-- The KS most recent sessions of item i: {session ids, event times}.
local function recent_sessions(i)
  local r = ISC[i]
  if r then return r end
  local raw = redis.call('ZRANGE', base .. 'is:' .. i, 0, KS - 1, 'REV', 'WITHSCORES')
  local ss, ts = {}, {}
  for j = 1, #raw, 2 do ss[#ss + 1] = raw[j]; ts[#ts + 1] = tonumber(raw[j + 1]) end
  r = {ss, ts}
  ISC[i] = r
  return r
end


-- Session-neighbourhood scores (STAN-like) for a query session q = items (most recent first,
-- q_1 = current click), own session id `self` excluded:
--   w(q_p) = exp(-(p - 1) / KSPW);  candidates: the KS most recent sessions of each of q_1..q_KI
--   sim(q, n) = sum_{i in q and n} w(i) / (sqrt(sum_p w(q_p)^2) * sqrt(|n|)) * exp(-(now - t_n) / KSNH)
--   (t_n: latest event time of n on one of those items); the KK most similar sessions n, then
--   kn(c) = sum_n sim(q, n) * exp(-|pos_n(c) - pos_n(i*)| / KINH), i* = the item of n in q that
--   n clicked last. Neighbour sessions are their stored lists (one MGET).
local KEEP = math.max(N, W)
local EXPQ, EXPD = {}, {}  -- exp(-(p - 1) / KSPW) and exp(-d / KINH) for p, d < KEEP
if KW > 0 then
  for p = 1, KEEP do EXPQ[p] = math.exp(-(p - 1) / KSPW) end
  for d = 0, KEEP do EXPD[d] = math.exp(-d / KINH) end
end

local function knn(items, self, now)
  local w, nq = {}, math.min(#items, KEEP)
  local norm = 0
  for p = 1, nq do
    local a = items[p]
    if not w[a] then
      local x = EXPQ[p]
      w[a] = x
      norm = norm + x * x
    end
  end
  norm = math.sqrt(norm)
  local tn, ids = {}, {}
  for q = 1, math.min(KI, nq) do
    local rs = recent_sessions(items[q])
    local ss, ts = rs[1], rs[2]
    for j = 1, #ss do
      local s = ss[j]
      if s ~= self then
        local t = ts[j]
        local old = tn[s]
        if not old then tn[s] = t; ids[#ids + 1] = s elseif t > old then tn[s] = t end
      end
    end
  end
  if #ids == 0 then return nil end
  -- neighbour lists: the current state (SESS holds sessions this call already read or changed,
  -- not yet flushed); the others in one MGET, parsed into SESS (so reused for the whole batch)
  local lists, miss, mj = {}, {}, {}
  for j = 1, #ids do
    local sk = base .. 's:' .. ids[j]
    local list = SESS[sk]
    if list then lists[j] = list else miss[#miss + 1] = sk; mj[#mj + 1] = j end
  end
  if #miss > 0 then
    local raws = redis.call('MGET', unpack(miss))
    for m = 1, #miss do
      local list = split_items(raws[m])
      SESS[miss[m]] = list
      lists[mj[m]] = list
    end
  end
  -- similarities (parallel arrays: no table per neighbour)
  local ns, nsim, nlist, nn = {}, {}, {}, 0
  for j = 1, #ids do
    local list = lists[j]
    local dot, nd = 0, #list
    if DEDUP then
      for q = 1, nd do
        local x = w[list[q]]
        if x then dot = dot + x end
      end
    else  -- repeats possible: count each distinct item once
      local seen = {}
      nd = 0
      for q = 1, #list do
        local it = list[q]
        if not seen[it] then
          seen[it] = true
          nd = nd + 1
          local x = w[it]
          if x then dot = dot + x end
        end
      end
    end
    if dot > 0 then
      local s = ids[j]
      nn = nn + 1
      ns[nn] = s
      nsim[nn] = dot / (norm * math.sqrt(nd)) * math.exp(-(now - tn[s]) / KSNH)
      nlist[nn] = list
    end
  end
  if nn < KMIN then return nil end
  local use = nn
  if nn > KK then  -- keep the KK most similar (ties: smaller session id first)
    local idx = {}
    for j = 1, nn do idx[j] = j end
    table.sort(idx, function(x, y)
      return nsim[x] > nsim[y] or (nsim[x] == nsim[y] and ns[x] < ns[y])
    end)
    local s2, m2, l2 = {}, {}, {}
    for j = 1, KK do s2[j] = ns[idx[j]]; m2[j] = nsim[idx[j]]; l2[j] = nlist[idx[j]] end
    ns, nsim, nlist, use = s2, m2, l2, KK
  end
  local kn, order = {}, {}
  for j = 1, use do
    local sim, list = nsim[j], nlist[j]
    local star
    for q = 1, #list do if w[list[q]] then star = q; break end end
    local seen = nil
    if not DEDUP then seen = {} end
    local q0, q1 = 1, #list
    if DEDUP then q0, q1 = math.max(1, star - KWIN), math.min(#list, star + KWIN) end
    for q = q0, q1 do
      local c = list[q]
      local d = q - star
      if d < 0 then d = -d end
      if d <= KWIN and (not seen or not seen[c]) then
        if seen then seen[c] = true end
        local v = sim * (EXPD[d] or math.exp(-d / KINH))
        local old = kn[c]
        if old then kn[c] = old + v else kn[c] = v; order[#order + 1] = c end
      end
    end
  end
  return kn, order, w
end
