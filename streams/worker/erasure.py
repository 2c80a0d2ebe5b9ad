"""Erasing one customer (``DELETE /users/{id}``, ``shopstream forget``)."""

from __future__ import annotations

import logging

from streams.domain.envelope import Envelope, id_hash
from streams.domain.profile import DAY_MS
from streams.domain.recommendations import rec_arm
from streams.worker.identity import Identities
from streams.worker.partitions import Partitions

log = logging.getLogger(__name__)


async def forget(parts: Partitions, uid: str) -> dict[str, int]:
    """Erase one user: an erasure fence (so events of the user delivered again stay
    forgotten, :mod:`streams.worker.tombstones`), profile (with a changelog tombstone), churn
    track (so no pending alert fires), model memories, the Redis session/purchase keys,
    the identity links to the user (:mod:`streams.worker.identity`) and their name in the
    campaign tally and stored alert outcomes (:meth:`KpiStore.forget_user`). Returns counts.

    The caller holds the batch lock, so no batch holding the user runs meanwhile, and
    writes a checkpoint when model memories were removed (:meth:`BatchProcessor.forget`).
    """
    shop = parts.shop
    removed = {"profile": 0, "churn_track": 0, "model_memory": 0, "redis_keys": 0,
               "stored_models": 0, "identity_links": 0, "erasure_fences": 0,
               "campaign_entries": 0}  # fmt: skip
    table = shop.profiles
    raw = table.get(uid)
    if raw is not None:
        env = Envelope.from_bytes(raw)
        # the fence first (streams.worker.tombstones): redelivered events stay forgotten; a
        # crash right after it leaves the profile, and forgetting again is harmless
        incarnation = parts.sources.incarnation
        removed["erasure_fences"] = await parts.tombstones.erase(uid, env, incarnation)
        del table.data[uid]
        table.send_changelog(env.partition, uid, None, value_serializer="raw")
        removed["profile"] = 1
        state = parts.states.get(env.partition)
        if state is not None and dict.pop(state.users, uid, None) is not None:
            removed["churn_track"] = 1
    removed["model_memory"] = parts.models.forget(uid)
    rec_arm.cache_clear()  # the memoised arms name users (and the digests their event ids)
    id_hash.cache_clear()
    store = shop.runtime.store
    # one script call; deletes nothing (writes nothing) when the user has no keys
    removed["redis_keys"] = await parts.retry("forget", lambda: store.forget_user(uid))
    s = shop.settings
    ids = Identities(shop.runtime.redis, s.redis_prefix, int(s.identity_ttl_days * DAY_MS))
    removed["identity_links"] = await parts.retry("forget links", lambda: ids.forget(uid))
    kpis = shop.runtime.kpis  # their alerts and outcomes stay counted, naming nobody
    removed["campaign_entries"] = await parts.retry("forget in the campaign tally",
                                                    lambda: kpis.forget_user(uid))  # fmt: skip
    if removed["profile"] or removed["model_memory"]:
        # stored partition models may remember the user: our copies (now without the user)
        # replace stored ones as new as them; newer ones are their owner's. An unknown user
        # costs none of this (re-signing every bundle: a cheap denial of service otherwise).
        removed["stored_models"] = await parts.rewrite_models()
    log.info("forgot user %s: %s", uid, removed)
    return removed
