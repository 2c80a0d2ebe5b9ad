"""The worker's cyclic garbage collector: what lives as long as the process is frozen out of
its sight, and young objects are collected less often (docs/performance.md, "Eleventh
round": ``scripts/batch_cpu.py --users 1200`` spends 2.8-3.5 µs per event in the collector
instead of 8.5-8.9, with a full collection 0-1 times per run instead of 9)."""

from __future__ import annotations

import gc

#: Container objects allocated (net of those freed) between two collections of the youngest
#: generation; CPython's default is 700. A batch of 500 events allocates far more than 700,
#: so with the default every batch ran dozens of young collections, each walking the objects
#: still alive, and every tenth of ten middle ones became a full collection of the whole heap.
YOUNG_THRESHOLD = 10_000


def settle(young: int = YOUNG_THRESHOLD) -> None:
    """Collect, freeze everything alive now (modules, River, Faust's app: it lives as long as
    the process) and collect the youngest generation every ``young`` allocations.

    >>> import gc
    >>> before = gc.get_threshold()
    >>> settle(5000)
    >>> gc.get_threshold()[0]
    5000
    >>> gc.set_threshold(*before); gc.unfreeze()
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
