"""CPU per anomaly observation and per model-state round trip: River's HST vs models.hst,
pickle vs JSON.

``PYTHONPATH=. .venv/bin/python scripts/bench_hst.py [--users N] [--repeat R]``

1. **trees**: ``score_one`` + ``learn_one`` of the detector's 5 features per call, River's
   ``HalfSpaceTrees`` (what ``AnomalyDetector`` used) and ours, same seed (the scores are
   checked equal as it goes).
2. **detector**: ``AnomalyDetector.observe`` over generated storefront traffic, with River's
   trees swapped in and with ours (flags checked equal).
3. **state**: a bundle set (4 partitions, the traffic of ``--users`` users) serialised and
   rebuilt: pickle (format 1, what checkpoints and hand-overs stored) against
   ``to_dict`` + orjson and ``from_dict`` (format 2).

CPU time (``time.process_time``), the best of ``--repeat`` runs; figures vary with the
machine's load.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable
from typing import Any

import orjson
from river import anomaly as river_anomaly

from models.anomaly import AnomalyDetector
from models.bundle import ModelSet
from models.hst import HalfSpaceTrees
from streams.core.events import validate
from streams.core.settings import Settings
from streams.domain.profile import update_profile
from streams.tools.generate import generate
from streams.worker.configs import anomaly_config, model_factory, segment_config


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return min(times), out


def trees(xs: list[dict[str, float]], make: Callable[[], Any]) -> list[float]:
    m, scores = make(), []
    for x in xs:
        scores.append(float(m.score_one(x)))
        m.learn_one(x)
    return scores


def detector(events: list[Any], river: bool) -> list[Any]:
    d = AnomalyDetector(anomaly_config(Settings()))
    if river:
        d.hst = river_anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=7)
    return [d.observe(e) for e in events]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    events = [validate(e) for e in generate(users=args.users, seed=3, days=60)[0]]
    n = len(events)

    # features as the detector hands them to its trees
    probe = AnomalyDetector(anomaly_config(Settings()))
    xs = []
    for e in events:
        u = probe._user(e.user_id)
        probe._window(u, e)
        probe._rules(u, e)
        xs.append(probe._features(u, e))
    mk_r = lambda: river_anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=7)  # noqa: E731
    mk_o = lambda: HalfSpaceTrees(n_trees=10, height=6, window_size=250, seed=7)  # noqa: E731
    t_r, s_r = best(lambda: trees(xs, mk_r), args.repeat)
    t_o, s_o = best(lambda: trees(xs, mk_o), args.repeat)
    assert s_r == s_o, "scores differ"
    print(f"trees, score_one+learn_one, {n} calls: river {t_r / n * 1e6:.1f} us/call, "
          f"models.hst {t_o / n * 1e6:.1f} us/call ({t_r / t_o:.2f}x)")  # fmt: skip

    d_r, f_r = best(lambda: detector(events, river=True), args.repeat)
    d_o, f_o = best(lambda: detector(events, river=False), args.repeat)
    assert f_r == f_o, "flags differ"
    print(f"AnomalyDetector.observe, {n} events: river trees {d_r / n * 1e6:.1f} us/event, "
          f"models.hst {d_o / n * 1e6:.1f} us/event ({d_r / d_o:.2f}x)")  # fmt: skip

    fresh, ms, profiles = model_factory(Settings()), ModelSet(), {}
    for i, e in enumerate(events):
        m = ms.get(sum(e.user_id.encode()) % 4, fresh)
        m.anomalies.observe(e)
        profiles[e.user_id] = p = update_profile(profiles.get(e.user_id), e)
        m.segments.update(p, e.ts_ms)
        m.seen("shop.events", 0, i, e.ts_ms)
    configs = segment_config(Settings()), anomaly_config(Settings())
    p_w, blob = best(lambda: pickle.dumps(ms, protocol=pickle.HIGHEST_PROTOCOL), args.repeat)
    p_r, _ = best(lambda: pickle.loads(blob), args.repeat)
    j_w, doc = best(lambda: orjson.dumps(ms.to_dict()), args.repeat)
    j_r, back = best(lambda: ModelSet.from_dict(orjson.loads(doc), *configs), args.repeat)
    assert back.to_dict() == ms.to_dict()
    users = sum(len(m.anomalies.users) for m in ms.parts.values())
    print(f"model set state ({users} users in 4 partitions): pickle {len(blob) / 1e3:.0f} kB, "
          f"write {p_w * 1e3:.1f} ms, read {p_r * 1e3:.1f} ms; JSON {len(doc) / 1e3:.0f} kB, "
          f"write {j_w * 1e3:.1f} ms, read+rebuild {j_r * 1e3:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
