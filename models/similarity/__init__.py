"""Item-to-item similarity in Redis: the store (:mod:`.store`), its Lua script
(``similarity.lua``) and the script's math stated in Python (:mod:`.reference`)."""

from models.similarity.store import (
    SCORING_FIELDS,
    SENTINEL,
    Groups,
    RecConfig,
    SimilarityStore,
    delete_prefix,
    guard,
    key_base,
    load_lua,
    scoring_variant,
)

__all__ = [
    "SCORING_FIELDS",
    "SENTINEL",
    "Groups",
    "RecConfig",
    "SimilarityStore",
    "delete_prefix",
    "guard",
    "key_base",
    "load_lua",
    "scoring_variant",
]
