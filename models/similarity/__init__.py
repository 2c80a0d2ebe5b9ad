"""Item-to-item similarity in Redis: the store (:mod:`.store`), its Lua script
(``similarity.lua``) and the script's math stated in Python (:mod:`.reference`)."""

from models.similarity.store import (
    SENTINEL,
    Groups,
    RecConfig,
    SimilarityStore,
    delete_prefix,
    guard,
    key_base,
    load_lua,
)

__all__ = [
    "SENTINEL",
    "Groups",
    "RecConfig",
    "SimilarityStore",
    "delete_prefix",
    "guard",
    "key_base",
    "load_lua",
]
