"""A pytest plugin that loads the similarity script with one deliberate fault (``MUTANT``).

It checks that ``tests/integration/test_similarity_differential.py`` can fail: each fault
below makes it fail within its 150 examples in every run (``unlist_card``, which random
streams caught in one run of five, through the example the test states). Run one fault at a
time against a Redis of your own, e.g.::

    MUTANT=no_flush_before_rebase .venv/bin/python -m pytest -p tests.support.script_mutants \\
        tests/integration/test_similarity_differential.py -o timeout=0

A fault whose text is no longer in the script (the script changed) stops the run with an
``AssertionError`` naming it: update the fault, do not drop it. Not part of ``make test``.
"""

from __future__ import annotations

import os

import pytest

import models.similarity.store as store

#: name -> (text of the script, what it becomes)
FAULTS: dict[str, tuple[str, str]] = {
    # a set that could be pruned inside the call is merged instead of written click by click
    "no_prune_fallback": (
        "  if new > 0 and card + new - extra > M + SLACK then  -- it could be pruned within "
        "the call\n    return write_by_click(key, p)\n  end\n",
        "",
    ),
    # a rebase without first writing the deferred increments
    "no_flush_before_rebase": (
        "then flush_rows(); rebase(clock) end",
        "then rebase(clock) end",
    ),
    # the bug 657c1aa fixed: a ZINCRBY reply equal to the increment counts the member as new
    "zincrby_new_member": (
        "    if redis.call('ZADD', key, 'XX', 'INCR', vs[first], ms[first]) then return 0 end\n"
        "    redis.call('ZADD', key, vs[first], ms[first])\n    return 1\n",
        "    local r = tonumber(redis.call('ZINCRBY', key, vs[first], ms[first]))\n"
        "    if r == vs[first] then return 1 end\n    return 0\n",
    ),
    # a call's popularity increments of an item summed first, then added (other last bits)
    "pop_sum_first": (
        "    local order, listed = {}, {}\n"
        "    for j = 1, #PPM do  -- ZINCRBY's addition, click by click: 0 + g for an absent item\n"
        "      local c = PPM[j]\n"
        "      PC[c] = (PC[c] or 0) + PPV[j]\n"
        "      if not listed[c] then listed[c] = true; order[#order + 1] = c end\n"
        "    end\n",
        "    local order, listed, sums = {}, {}, {}\n"
        "    for j = 1, #PPM do\n"
        "      local c = PPM[j]\n"
        "      sums[c] = (sums[c] or 0) + PPV[j]\n"
        "      if not listed[c] then listed[c] = true; order[#order + 1] = c end\n"
        "    end\n"
        "    for q = 1, #order do local c = order[q]; PC[c] = (PC[c] or 0) + sums[c] end\n",
    ),
    # an is: set's cached size not decreased when a session leaves it
    "unlist_card": (
        "if redis.call('ZREM', gk, session) == 1 and CARD[gk] then CARD[gk] = CARD[gk] - 1 end",
        "redis.call('ZREM', gk, session)",
    ),
    # a new neighbour set gets no TTL of its own (only when its item is clicked)
    "no_ttl_for_new_set": (
        "    if card == added then  -- the set was just created: its TTL, and the sentinel\n"
        "      if ITTL > 0 then renew(key) end\n",
        "    if card == added then  -- the set was just created: its TTL, and the sentinel\n",
    ),
    # the learning call's recommendations keep purchased items (recommend_many drops them)
    "learn_recs_keep_purchases": (
        "out[#out + 1] = recommend(requests[i][1], requests[i][2], '1', '', k, gnow)",
        "out[#out + 1] = recommend(requests[i][1], requests[i][2], '0', '', k, gnow)",
    ),
    # the per-call caches survive a rebase (counts of before it reused)
    "caches_survive_rebase": (
        "  PC, CARD, ROWS = {}, {}, {}\nend",
        "end",
    ),
}

_load_lua = store.load_lua


def load_lua() -> str:
    """The script with the fault ``MUTANT`` names."""
    name = os.environ["MUTANT"]
    old, new = FAULTS[name]
    src = _load_lua()
    assert src.count(old) == 1, f"fault {name}: its text is in the script {src.count(old)} times"
    return src.replace(old, new)


def pytest_configure(config: object) -> None:
    """Loaded as a plugin (``-p``, never by an import: the suite imports every module for its
    doctests): the fault goes in; detection only: no shrinking, no example database (a
    fault's failure is the point)."""
    if os.environ.get("MUTANT") not in FAULTS:
        raise pytest.UsageError(f"MUTANT must name one of: {', '.join(FAULTS)}")
    store.load_lua = load_lua
    from hypothesis import Phase, settings

    settings.register_profile(
        "mutant", deadline=None, database=None, phases=[Phase.explicit, Phase.generate]
    )
    settings.load_profile("mutant")
