-- Scoring of the similarity store (included by similarity.lua, see load_lua): item-to-item
-- candidates of the W most recent session items, two hops from the current item, the
-- session-neighbourhood mix (neighbourhood.lua), the session-item boosts, top k.
local function always() return true end

-- [hidden items] Catalog control, separate from the scoring: items in the set <base>hidden
-- (PUT /items/{id} {"hidden": true}) are dropped by every keep predicate that score() uses,
-- so no recommendation (live or published) and no similar-items list ever shows them.
local HIDDEN, HID = base .. 'hidden', nil
local function unhidden(keep)
  if HID == nil then HID = redis.call('SCARD', HIDDEN) > 0 and {} or false end
  if not HID then return keep end
  return function(c)
    local h = HID[c]
    if h == nil then h = redis.call('SISMEMBER', HIDDEN, c) == 1; HID[c] = h end
    return not h and keep(c)
  end
end
-- [/hidden items]

-- The n heaviest neighbours of a (sentinel left out): {members, growth-weighted weights, n};
-- a cached row serves any n up to the one it was read with.
local function row_of(a, n)
  local r = ROWS[a]
  if r and r[3] >= n then return r end
  local raw = redis.call('ZRANGE', base .. 'n:' .. a, 0, n - 1, 'REV', 'WITHSCORES')
  local ms, ws = {}, {}
  for j = 1, #raw, 2 do
    if raw[j] ~= SENT then ms[#ms + 1] = raw[j]; ws[#ws + 1] = tonumber(raw[j + 1]) end
  end
  r = {ms, ws, n}
  ROWS[a] = r
  return r
end

-- Keep the k best (score desc, item asc) in a sorted array by insertion.
local function topk(acc, cands, k, keep)
  local top = {}
  for j = 1, #cands do
    local c = cands[j]
    local s = acc[c]
    local n = #top
    -- the cheap comparison first: keep() (a filter, maybe a Redis read) only for entrants
    if (n < k or s > top[n][2] or (s == top[n][2] and c < top[n][1])) and keep(c) then
      local pos = n + 1
      while pos > 1 and (top[pos - 1][2] < s or (top[pos - 1][2] == s and top[pos - 1][1] > c)) do
        pos = pos - 1
      end
      table.insert(top, pos, {c, s})
      if #top > k then top[#top] = nil end
    end
  end
  return top
end

-- score(c) = sum_p r_p * sim(a_p, c) / (cnt(a_p)^ALPHA * cnt(c)^BETA) + RB * sum_{p: a_p = c} r_p,
-- r_p = 1 / p^RD over the W most recent session items a_1 (latest) .. a_W; counts decayed to now;
-- only the L heaviest neighbours of each a_p are read. With KW > 0 and a session, items not in
-- the session also get KW * (S_ii / S_kn) * kn(c), where S_ii and S_kn sum the item-to-item and
-- the neighbourhood scores of those items: the neighbourhood re-distributes a KW share of the
-- item-to-item mass, so its scale never competes with the repeat boost.
local function score(items, gnow, k, keep, boost, self, now)
  flush_rows()  -- the rows and counts as this call's learning left them
  keep = unhidden(keep)  -- [hidden items]
  local acc, cands = {}, {}
  local function add(c, v)  -- acc[c] += v; c becomes a candidate with its first score
    local old = acc[c]
    if old then acc[c] = old + v else acc[c] = v; cands[#cands + 1] = c end
  end
  local nw = math.min(W, #items)
  local rw, distinct = {}, {}
  for p = 1, nw do
    local a = items[p]
    if not rw[a] then rw[a] = 0; distinct[#distinct + 1] = a end
    rw[a] = rw[a] + 1 / p ^ RD
  end
  local counts = pop_counts(distinct, 1, #distinct)
  local row1, ca1
  for q = 1, #distinct do
    local a, ca = distinct[q], counts[q]
    if ca then
      local f = rw[a] / ((ca / gnow) ^ ALPHA * gnow)
      local row = row_of(a, L)
      local ms, ws = row[1], row[2]
      for j = 1, #ms do
        add(ms[j], ws[j] * f)
      end
      if q == 1 then row1, ca1 = row, ca end
    end
  end
  -- two hops from the current item a = items[1]: c gets
  -- H2 * sum_b (sim(a, b) / T) * sim(b, c) / (cnt(b)^ALPHA * cnt(a)^ALPHA) over the H2B heaviest
  -- neighbours b ~= a of a (T: their total weight), reading the L heaviest of each b: reaches
  -- items never paired with a itself
  if H2 > 0 and row1 then
    local a = items[1]
    local first, tot = {}, 0
    local ms1, ws1 = row1[1], row1[2]
    for j = 1, #ms1 do
      local b = ms1[j]
      if #first >= H2B then break end
      if b ~= a then
        local v = ws1[j]
        first[#first + 1] = {b, v}
        tot = tot + v
      end
    end
    if tot > 0 then
      local bs = {}
      for j = 1, #first do bs[j] = first[j][1] end
      local bc = pop_counts(bs, 1, #bs)
      local fa = H2 / ((ca1 / gnow) ^ ALPHA)
      for j = 1, #first do
        local cb = bc[j]
        if cb then
          local fb = fa * (first[j][2] / tot) / ((cb / gnow) ^ ALPHA * gnow)
          local rb = row_of(first[j][1], H2L)
          local ms, ws = rb[1], rb[2]
          for m = 1, math.min(#ms, H2L) do
            add(ms[m], ws[m] * fb)
          end
        end
      end
    end
  end
  for i = 1, #cands, 500 do
    local last = math.min(i + 499, #cands)
    local cc = pop_counts(cands, i, last)
    for j = i, last do
      local n = cc[j - i + 1]
      if n then acc[cands[j]] = acc[cands[j]] / (n / gnow) ^ BETA end
    end
  end
  if KW > 0 and self then
    local kn, order, insess = knn(items, self, now)
    if kn then
      local sii, skn = 0, 0
      for j = 1, #cands do
        local c = cands[j]
        if not insess[c] then sii = sii + acc[c] end
      end
      for j = 1, #order do
        local c = order[j]
        if not insess[c] then skn = skn + kn[c] end
      end
      if sii > 0 and skn > 0 then
        local f = KW * sii / skn
        for j = 1, #order do
          local c = order[j]
          if not insess[c] then
            add(c, f * kn[c])
          end
        end
      end
    end
  end
  if boost then
    for q = 1, #distinct do
      local a = distinct[q]
      add(a, RB * rw[a])
    end
    if RB4 > 0 then  -- the older session items (beyond the W scored ones): a flat boost
      local b = RB * RB4
      for p = W + 1, #items do
        local a = items[p]
        if not rw[a] then
          add(a, b)
        end
      end
    end
  end
  local top = topk(acc, cands, k, keep)
  if #top < k then  -- cold start: fill with decayed popularity, score 0
    local seen = {}
    for j = 1, #top do seen[top[j][1]] = true end
    local want = k + #top - 1
    if keep ~= always then want = 3 * k + 20 + #top end
    local popular = redis.call('ZRANGE', POP, 0, want, 'REV')
    for j = 1, #popular do
      local c = popular[j]
      if #top >= k then break end
      if not seen[c] and keep(c) then top[#top + 1] = {c, 0}; seen[c] = true end
    end
  end
  return top
end

local function flat(top)
  local out = {}
  for j = 1, #top do out[#out + 1] = top[j][1]; out[#out + 1] = tostring(top[j][2]) end
  return out
end


-- Top k for a user's session (flat item, score list): excl = '1' drops items the user bought,
-- category ~= '' keeps only that category's items.
local function recommend(user, session, excl, category, k, gnow)
  local items = session_items(base .. 's:' .. session)
  local bought = {}
  if excl == '1' then
    for _, b in ipairs(redis.call('SMEMBERS', base .. 'ub:' .. user)) do bought[b] = true end
  end
  local keep = function(c)
    if bought[c] then return false end
    if category ~= '' and redis.call('HGET', CAT, c) ~= category then return false end
    return true
  end
  return flat(score(items, gnow, k, keep, true, session, clock or 0))
end

