"""Business figures and alert outcomes in Redis, exactly once (issue 18): the store.

One Lua script (:data:`SCRIPT`) applies a batch's KPI records (:mod:`streams.domain.kpis`)
per ``topic@incarnation:partition``, past the offset already stored for it
(``<prefix>kpi:off``, the fence), so a redelivered batch changes nothing; it refuses, like
the similarity store, when the store epoch is gone or a partition moved to another worker.
It answers with the counters of every day the batch touched (applied or not), which the
batch publishes to ``shop.kpis`` (one snapshot per day, keyed by the day; ``version`` is
the number of events the day counts, which grows with every batch that changed it, so a
consumer keeps the highest).

Keys (all under the store's hash tag ``{prefix}:``):

* ``kpi:d:<day>`` (hash): the day's counters; ``kpi:days`` (sorted set, by name): the days;
* ``kpi:s:<day>:<stage>`` (set): sessions that reached a funnel stage on the day, kept for
  ``SHOPSTREAM_KPI_SESSION_TTL_DAYS`` (wall clock) after the last new one;
* ``kpi:s:<day>:rclick``, ``kpi:s:<day>:rbuy`` (sets, same TTL): the ``rec_id`` s clicked
  and bought on the day (recommendation feedback: ``rec_*@<arm>`` counters of the day);
* ``kpi:meta`` (hash): ``clock``, the latest event time applied;
* ``kpi:outcomes`` (alert id -> its ``shop.alert-outcomes`` JSON), written by the publisher
  (:meth:`KpiStore.keep_outcomes`) with the outcomes it sends;
* ``kpi:wmax``, ``kpi:wm`` (hashes, per ``topic@incarnation:partition``): the two largest
  event times the partition applied; ``kpi:wm`` is its watermark for the forecasts
  (:mod:`streams.domain.forecasts`: one outlier cannot drag it); ``fc:seen``: the wall
  time (ms) its last record was applied (idle partitions; not event-time state);
* the uplift tally of churn alerts (docs/marketing.md): ``kpi:alerts`` (alert id -> JSON
  ``{u, ts, g, tier}``, written once), ``kpi:alert-of`` (user -> their latest alert id),
  ``kpi:returned`` (alert id -> revenue in cents of the customer's purchases within
  ``SHOPSTREAM_CHURN_HORIZON_DAYS`` of the alert, present once they bought). A purchase is
  fenced by its offset like every record; an alert is registered at most once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson

from models.similarity import guard, key_base
from streams.core.events import Event, Record
from streams.core.payloads import AlertOutcome, ChurnAlert
from streams.core.settings import Settings
from streams.domain.kpis import figures, kpi_record
from streams.domain.profile import DAY_MS

log = logging.getLogger(__name__)

#: ``[[day, {field: count}], ...]`` of the days named in ``ARGV[2:]``, as one JSON text built
#: in Redis (``cjson``): the forecasts' history passes through the worker without being
#: parsed (:meth:`KpiStore.raw_days`).
RAW_DAYS = """
local out = {}
for i = 2, #ARGV do
  local flat, counters = redis.call('HGETALL', ARGV[1] .. 'kpi:d:' .. ARGV[i]), {}
  for j = 1, #flat, 2 do counters[flat[j]] = flat[j + 1] end
  out[i - 1] = {ARGV[i], counters}
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""
#: Days per :data:`RAW_DAYS` call: a script holds Redis until it ends, and a day's hash grows
#: with the shop's categories (a review measured 330 ms for 189 days of 1,000 categories in
#: one call, other clients waiting the whole time).
RAW_DAYS_PER_CALL = 31

SCRIPT = """
local base = ARGV[1]
local OFF, DAYS, META = base .. 'kpi:off', base .. 'kpi:days', base .. 'kpi:meta'
local ALERTS, OF, RET = base .. 'kpi:alerts', base .. 'kpi:alert-of', base .. 'kpi:returned'
local WM, WMAX, SEENWALL = base .. 'kpi:wm', base .. 'kpi:wmax', base .. 'fc:seen'
if ARGV[2] ~= '' then
  local g = cjson.decode(ARGV[2])
  if g.epoch and redis.call('GET', base .. 'epoch') ~= g.epoch then
    return redis.error_reply('EPOCH the store epoch ' .. g.epoch .. ' is gone: Redis lost its data')
  end
  for field, token in pairs(g.owners or {}) do
    local owner = redis.call('HGET', base .. 'owners', field)
    if owner ~= token then
      return redis.error_reply('FENCED ' .. field .. ' now belongs to ' .. tostring(owner) ..
                               ', not ' .. token)
    end
  end
end
local ttl, horizon = tonumber(ARGV[4]), tonumber(ARGV[5])
local NAME = {view = 'views', add_to_cart = 'carts', purchase = 'purchases'}
local STAGE = {view = 'view', add_to_cart = 'cart', purchase = 'purchase'}
local OTHER = {cart = 'purchase', purchase = 'cart'}
-- alerts first: [alert_id, user, ts, group, tier]; registered once
local alerts = cjson.decode(ARGV[6])
for i = 1, #alerts do
  local a = alerts[i]
  local rec = cjson.encode({u = a[2], ts = a[3], g = a[4], tier = a[5]})
  if redis.call('HSETNX', ALERTS, a[1], rec) == 1 then
    local prev = redis.call('HGET', OF, a[2])
    local older = true
    if prev then
      local p = redis.call('HGET', ALERTS, prev)
      older = (not p) or cjson.decode(p).ts <= a[3]
    end
    if older then redis.call('HSET', OF, a[2], a[1]) end
  end
end
local clock = tonumber(redis.call('HGET', META, 'clock') or '-1')
local touched, days, applied = {}, {}, 0
-- counters are summed here and written once per field at the end; a session's SADD is
-- sent once per batch (SEEN), the sets' EXPIRE once per set
local INC, SEEN, SETS = {}, {}, {}
local function add(key, field, n)
  local h = INC[key]
  if not h then h = {}; INC[key] = h end
  h[field] = (h[field] or 0) + n
end
-- whether member is new to the set sk (kept with the sessions' TTL)
local function first_of(sk, member)
  SETS[sk] = true
  return redis.call('SADD', sk, member) == 1
end
local groups = cjson.decode(ARGV[3])
for gi = 1, #groups do
  local field, records = groups[gi][1], groups[gi][2]
  local stored = tonumber(redis.call('HGET', OFF, field) or '-1')
  local last = stored
  -- the partition's two largest event times; the second is its watermark (forecasts)
  local m1 = tonumber(redis.call('HGET', WMAX, field) or '-1')
  local m2 = tonumber(redis.call('HGET', WM, field) or '-1')
  for i = 1, #records do
    -- [offset, day, type, session, category, cents, quantity, shown, rec_id, rec_arm,
    --  user, ts]
    local r = records[i]
    local offset, day = tonumber(r[1]), r[2]
    if not touched[day] then touched[day] = true; days[#days + 1] = day end
    if offset > last then
      local etype, session, cat, cents, qty, ts = r[3], r[4], r[5], r[6], r[7], r[12]
      local key, stage, name = base .. 'kpi:d:' .. day, STAGE[etype], NAME[etype]
      local sk = base .. 'kpi:s:' .. day .. ':' .. stage
      local mark = sk .. '\0' .. session
      if not SEEN[mark] then
        SEEN[mark] = true
        SETS[sk] = true
        if redis.call('SADD', sk, session) == 1 then
          add(key, 's_' .. stage, 1)
          local other = OTHER[stage]
          local both = other and base .. 'kpi:s:' .. day .. ':' .. other
          if both and redis.call('SISMEMBER', both, session) == 1 then
            add(key, 's_cart_purchase', 1)
          end
        end
      end
      add(key, name, 1)
      add(key, name .. '@' .. cat, 1)
      if stage == 'purchase' then
        add(key, 'revenue', cents)
        add(key, 'revenue@' .. cat, cents)
        add(key, 'items', qty)
        local aid = redis.call('HGET', OF, r[11])
        if aid then
          local a = cjson.decode(redis.call('HGET', ALERTS, aid))
          if ts >= a.ts and ts <= a.ts + horizon then redis.call('HINCRBY', RET, aid, cents) end
        end
      end
      -- recommendation feedback per arm: distinct rec ids clicked / bought on the day
      if r[8] ~= '' then add(key, 'rec_shown@' .. r[8], 1) end
      local rid, arm = r[9], r[10]
      if rid ~= '' then
        if first_of(base .. 'kpi:s:' .. day .. ':rclick', rid) then
          add(key, 'rec_clicks@' .. arm, 1)
        end
        if stage == 'purchase' then
          add(key, 'rec_revenue@' .. arm, cents)
          if first_of(base .. 'kpi:s:' .. day .. ':rbuy', rid) then
            add(key, 'rec_buys@' .. arm, 1)
          end
        end
      end
      if ts > clock then clock = ts end
      if ts > m1 then m2 = m1; m1 = ts elseif ts > m2 then m2 = ts end
      if not touched['+' .. day] then
        touched['+' .. day] = true
        redis.call('ZADD', DAYS, 0, day)
      end
      applied, last = applied + 1, offset
    end
  end
  if last > stored then
    redis.call('HSET', OFF, field, last)
    redis.call('HSET', WMAX, field, m1)
    redis.call('HSET', WM, field, m2)
    redis.call('HSET', SEENWALL, field, ARGV[7])
  end
end
for key, h in pairs(INC) do
  for f, n in pairs(h) do redis.call('HINCRBY', key, f, n) end
end
if ttl > 0 then
  for sk in pairs(SETS) do redis.call('EXPIRE', sk, ttl) end
end
if applied > 0 then redis.call('HSET', META, 'clock', clock) end
local out = {applied}
for i = 1, #days do
  out[#out + 1] = days[i]
  out[#out + 1] = redis.call('HGETALL', base .. 'kpi:d:' .. days[i])
end
return out
"""


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def encode(
    valid: Sequence[tuple[Record, Event]],
    arm_of: Callable[[str], str] = lambda _: "",
    shown: Collection[str] = (),
) -> bytes:
    """The script's groups: ``[[source:partition, [record + [user, ts]]]]``, offset order.
    ``arm_of``: a user's recommendation arm ('' = feedback not counted); ``shown``: the ids
    of the trigger events whose recommendation is published."""
    arms: dict[str, str] = {}  # a user's arm is a hash: once per user and batch
    sources: dict[tuple[str, str], str] = {}  # a record's source: once per topic
    by_part: dict[tuple[str, int], list[tuple[int, list[Any]]]] = {}
    for rec, ev in valid:
        arm = arms.get(ev.user_id)
        if arm is None:
            arm = arms[ev.user_id] = arm_of(ev.user_id)
        row = kpi_record(rec.offset, ev, arm, shown=ev.event_id in shown)
        if row is None:
            continue
        source = sources.get((rec.topic, rec.incarnation))
        if source is None:
            source = sources[rec.topic, rec.incarnation] = rec.source
        by_part.setdefault((source, rec.partition), []).append(
            (rec.offset, [*row, ev.user_id, ev.ts_ms])
        )
    groups = []
    for source, partition in sorted(by_part):
        rows = by_part[source, partition]
        rows.sort(key=lambda row: row[0])  # offset order (stable: a batch's order on ties)
        groups.append((f"{source}:{partition}", [row for _, row in rows]))
    return orjson.dumps(groups)


def alert_rows(alerts: Sequence[ChurnAlert]) -> bytes:
    return orjson.dumps([[a["alert_id"], a["user_id"], a["ts"], a["group"],
                          a["action"].get("value_tier", "")] for a in alerts])  # fmt: skip


class KpiStore:
    """The figures in Redis: :meth:`apply` (the batch's fenced write), :meth:`days` and
    :meth:`alerts` (what the API and the dashboard read)."""

    def __init__(self, redis: Any, prefix: str, *, session_ttl_s: int, horizon_ms: int) -> None:
        self.redis, self.base = redis, key_base(prefix)
        self.session_ttl_s, self.horizon_ms = session_ttl_s, horizon_ms

    async def apply(
        self,
        valid: Sequence[tuple[Record, Event]],
        alerts: Sequence[ChurnAlert] = (),
        *,
        epoch: str = "",
        owners: dict[str, str] | None = None,
        arm_of: Callable[[str], str] = lambda _: "",
        shown: Collection[str] = (),
    ) -> tuple[int, list[dict[str, Any]]]:
        """Apply the records past each partition's fence and register ``alerts``; returns
        ``(records applied, figures of every day the batch touched)``. Raises ResponseError
        ``EPOCH``/``FENCED`` like the similarity store."""
        check = guard(epoch, owners) if owners is not None else b""
        res = await self.redis.eval(
            SCRIPT, 1, self.base + "kpi:off", self.base, check, encode(valid, arm_of, shown),
            self.session_ttl_s, self.horizon_ms, alert_rows(alerts), round(time.time() * 1000),
        )  # fmt: skip
        out = []
        for i in range(1, len(res), 2):
            flat = res[i + 1]
            counters = {_text(flat[j]): int(flat[j + 1]) for j in range(0, len(flat), 2)}
            day = figures(_text(res[i]), counters)
            out.append(day | {"version": day["views"] + day["carts"] + day["purchases"]})
        return int(res[0]), out

    async def days(self, first: str = "", last: str = "") -> list[dict[str, Any]]:
        """The figures of every stored day in ``[first, last]`` (ISO dates; '' = open)."""
        lo, hi = (f"[{first}" if first else "-"), (f"[{last}" if last else "+")
        names = [_text(d) for d in await self.redis.zrange(self.base + "kpi:days", lo, hi,
                                                            bylex=True)]  # fmt: skip
        pipe = self.redis.pipeline(transaction=False)
        for d in names:
            pipe.hgetall(self.base + "kpi:d:" + d)
        rows = await pipe.execute() if names else []
        return [figures(d, c) for d, c in zip(names, rows, strict=True)]

    async def raw_days(self, first: str = "", last: str = "") -> bytes:
        """The stored counters of every day in ``[first, last]`` as one JSON array of
        ``[day, {field: count}]`` (counts as text), unparsed: what the forecast process
        takes (:func:`streams.domain.kpis.figures` gives the figures of one). It costs the
        worker ~10 µs a day where :meth:`days` costs ~80 (docs/performance.md, "Fifteenth
        round"); Redis builds the text in calls of :data:`RAW_DAYS_PER_CALL` days."""
        lo, hi = (f"[{first}" if first else "-"), (f"[{last}" if last else "+")
        names = await self.redis.zrange(self.base + "kpi:days", lo, hi, bylex=True)
        parts = []
        for i in range(0, len(names), RAW_DAYS_PER_CALL):
            chunk = names[i : i + RAW_DAYS_PER_CALL]
            raw = await self.redis.eval(RAW_DAYS, 1, self.base + "kpi:days", self.base, *chunk)
            inner = (raw if isinstance(raw, bytes) else str(raw).encode())[1:-1]
            if inner:
                parts.append(inner)
        return b"[" + b",".join(parts) + b"]"

    async def series(self, last: str) -> list[dict[str, Any]]:
        """``[{day, revenue, orders}]`` of every stored day up to ``last`` (the forecast's
        history: two fields per day instead of the whole day)."""
        names = [_text(d) for d in await self.redis.zrange(self.base + "kpi:days", "-",
                                                            f"[{last}", bylex=True)]  # fmt: skip
        pipe = self.redis.pipeline(transaction=False)
        for d in names:
            pipe.hmget(self.base + "kpi:d:" + d, "revenue", "s_purchase")
        rows = await pipe.execute() if names else []
        return [{"day": d, "revenue": int(r or 0) / 100, "orders": int(o or 0)}
                for d, (r, o) in zip(names, rows, strict=True)]  # fmt: skip

    async def watermarks(self, source: str) -> tuple[dict[str, int], dict[str, int]]:
        """Per partition of ``source`` (``topic@incarnation``): its watermark, and the wall
        time its last record was applied (:mod:`streams.domain.forecasts`)."""
        marks = await self.redis.hgetall(self.base + "kpi:wm")
        seen = await self.redis.hgetall(self.base + "fc:seen")

        def mine(h: dict[Any, Any]) -> dict[str, int]:
            return {_text(k): int(float(v)) for k, v in h.items()
                    if _text(k).rpartition(":")[0] == source}  # fmt: skip

        return mine(marks), mine(seen)

    async def clock(self) -> int:
        """The latest event time applied (-1 before any)."""
        raw = await self.redis.hget(self.base + "kpi:meta", "clock")
        return int(raw) if raw is not None else -1

    async def alerts(self) -> list[dict[str, Any]]:
        """Every registered alert: ``{alert_id, user_id, ts, group, tier, returned,
        revenue, resolved}`` (resolved: the customer bought, or the horizon has passed in
        event time)."""
        raw = await self.redis.hgetall(self.base + "kpi:alerts")
        returned = await self.redis.hgetall(self.base + "kpi:returned")
        back = {_text(k): int(v) for k, v in returned.items()}
        clock = await self.clock()
        out = []
        for k, v in raw.items():
            a, aid = orjson.loads(v), _text(k)
            cents = back.get(aid)
            out.append({
                "alert_id": aid, "user_id": a["u"], "ts": a["ts"], "group": a["g"],
                "tier": a["tier"], "returned": cents is not None,
                "revenue": (cents or 0) / 100,
                "resolved": cents is not None or clock > a["ts"] + self.horizon_ms,
            })  # fmt: skip
        return out


    async def keep_outcomes(self, outcomes: Sequence[AlertOutcome]) -> None:
        """Store resolved alert outcomes (``kpi:outcomes``: alert id -> the published JSON);
        idempotent: a repeated outcome is the same record."""
        if outcomes:
            await self.redis.hset(self.base + "kpi:outcomes",
                                  mapping={o["alert_id"]: orjson.dumps(o) for o in outcomes})

    async def forget_user(self, uid: str) -> int:
        """Erase ``uid`` from the uplift tally and the stored outcomes: their alerts and
        outcomes stay counted (the campaign figures do not change) but name nobody. Returns
        how many entries named them. One pass over the alerts and outcomes (HSCAN): an
        erasure is rare; the caller holds the batch lock, so no batch writes meanwhile."""
        n = int(await self.redis.hdel(self.base + "kpi:alert-of", uid))
        for key, field in (("kpi:alerts", "u"), ("kpi:outcomes", "user_id")):
            name, changed = self.base + key, {}
            async for aid, raw in self.redis.hscan_iter(name, count=1000):
                row = orjson.loads(raw)
                if row.get(field) == uid:
                    changed[aid] = orjson.dumps(row | {field: ""})
            if changed:
                await self.redis.hset(name, mapping=changed)
            n += len(changed)
        return n

    async def outcomes(self) -> dict[str, dict[str, Any]]:
        """The stored outcomes by alert id."""
        raw = await self.redis.hgetall(self.base + "kpi:outcomes")
        return {_text(k): orjson.loads(v) for k, v in raw.items()}


def kpi_store(redis: Any, settings: Settings) -> KpiStore:
    """The store of ``settings`` (prefix, session TTL, the churn horizon for outcomes)."""
    return KpiStore(
        redis, settings.redis_prefix,
        session_ttl_s=round(settings.kpi_session_ttl_days * 86_400),
        horizon_ms=int(settings.churn_horizon_days * DAY_MS),
    )  # fmt: skip
