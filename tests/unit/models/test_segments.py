"""Segments: streaming quantiles, the RFM grid, and the online SegmentModel."""

from __future__ import annotations

import random

import orjson
import pytest

from models.segments import LABELS, SegmentConfig, SegmentModel, segment_name
from models.sketch import P2Quantile
from streams.core.events import Event
from streams.domain.outputs import segment_change
from streams.domain.profile import DAY_MS, Profile, update_profile

CONFIG = SegmentConfig(n_clusters=5)

T0 = 1_704_067_200_000


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8, 0.95])
def test_p2_tracks_the_exact_quantile_of_a_skewed_stream(p: float) -> None:
    rng = random.Random(3)
    xs = [rng.lognormvariate(3.0, 0.8) for _ in range(20_000)]
    q = P2Quantile(p)
    for x in xs:
        q.update(x)
    exact = sorted(xs)[int(p * len(xs))]
    assert q.value() == pytest.approx(exact, rel=0.05)
    assert q.count == len(xs)


def test_p2_state_round_trips_through_json_and_continues_identically() -> None:
    rng = random.Random(5)
    a = P2Quantile(0.6)
    for _ in range(500):
        a.update(rng.random())
    b = P2Quantile.from_dict(orjson.loads(orjson.dumps(a.to_dict())))
    for _ in range(500):
        x = rng.random()
        a.update(x)
        b.update(x)
    assert a.value() == b.value()


def test_p2_before_five_observations_is_exact_and_rejects_bad_levels() -> None:
    q = P2Quantile(0.5)
    assert q.value(-1.0) == -1.0
    for x in (3.0, 1.0, 2.0):
        q.update(x)
    assert q.value() == 2.0
    with pytest.raises(ValueError, match="p must be"):
        P2Quantile(1.0)


@pytest.mark.parametrize(
    ("rfm", "orders", "name"),
    [
        ((5, 5, 5), 12, "champions"),
        ((4, 1, 2), 1, "new_customers"),
        ((3, 3, 4), 4, "loyal"),
        ((5, 2, 1), 2, "promising"),
        ((3, 1, 2), 2, "need_attention"),
        ((2, 4, 3), 5, "at_risk"),
        ((1, 5, 5), 9, "cant_lose"),
        ((2, 1, 2), 2, "about_to_sleep"),
        ((1, 2, 1), 2, "hibernating"),
        ((5, 1, 1), 0, "prospects"),
    ],
)
def test_rfm_grid_names(rfm: tuple[int, int, int], orders: int, name: str) -> None:
    assert segment_name(*rfm, orders) == name
    assert name in LABELS


def buyer(user: str, orders: int, every_days: float, price: float, start: int = T0) -> Profile:
    p = None
    for k in range(orders):
        ts = start + int(k * every_days * DAY_MS)
        p = update_profile(
            p, Event(f"{user}-{k}", "purchase", user, f"{user}-s{k}", ts, item_id="i1", price=price)
        )
    assert p is not None
    return p


def test_known_customers_land_in_the_expected_segments() -> None:
    m = SegmentModel(CONFIG)
    now = T0 + 200 * DAY_MS
    # A frequent, big spender who just bought; the same customer silent for months;
    # a one-off small buyer long ago; a visitor who never bought.
    champ = buyer("champ", 20, 10.0, 80.0, start=now - 190 * DAY_MS)
    lost_vip = buyer("vip", 20, 5.0, 80.0, start=T0 - 100 * DAY_MS)
    once = buyer("once", 1, 1.0, 10.0, start=T0)
    visitor = update_profile(None, Event("v1", "view", "vis", "s", now - DAY_MS, item_id="i2"))
    got = {p.user_id: m.update(p, now).segment for p in (champ, lost_vip, once, visitor)}
    assert got == {
        "champ": "champions",
        "vip": "cant_lose",
        "once": "hibernating",
        "vis": "prospects",
    }


def test_changes_are_reported_once_with_the_previous_segment_and_a_payload() -> None:
    m = SegmentModel(CONFIG)
    p = buyer("u1", 1, 1.0, 30.0)
    first = m.update(p, p.last_purchase_ms)
    again = m.update(p, p.last_purchase_ms + 1000)
    later = m.update(p, p.last_purchase_ms + 120 * DAY_MS)
    assert (first.changed, first.previous) == (True, None)
    assert not again.changed
    assert later.changed and later.previous == first.segment
    rec = segment_change("u1", later, p.last_purchase_ms + 120 * DAY_MS)
    assert set(rec) == {"user_id", "segment", "previous", "rfm", "cluster", "ts"}
    assert set(rec["rfm"]) == {"r", "f", "m"} and all(1 <= v <= 5 for v in rec["rfm"].values())
    assert orjson.loads(orjson.dumps(rec)) == rec


def replay(model: SegmentModel, users: int, seed: int) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    profiles: dict[str, Profile] = {}
    out = []
    for n in range(3_000):
        uid = f"u{rng.randrange(users)}"
        ts = T0 + n * 3_600_000
        etype = "purchase" if rng.random() < 0.2 else "view"
        e = Event(
            f"e{n}",
            etype,
            uid,
            f"s{n // 5}",
            ts,
            item_id="i1",  # type: ignore[arg-type]
            price=rng.lognormvariate(3.0, 0.7),
        )
        p = profiles[uid] = update_profile(profiles.get(uid), e)
        upd = model.update(p, ts)
        out.append((uid, upd.segment, upd.cluster))
    return out


def test_model_is_deterministic_sizes_are_consistent_and_state_is_plain_json() -> None:
    a, b = SegmentModel(CONFIG), SegmentModel(CONFIG)
    assert replay(a, 200, 1) == replay(b, 200, 1)
    sizes = a.segment_sizes()
    assert sum(sizes.values()) == len(a.users)
    assert {c for _, _, c in replay(SegmentModel(CONFIG), 200, 1)} <= set(range(5))
    state = orjson.loads(orjson.dumps(a.to_dict()))  # no pickle needed
    c = SegmentModel.from_dict(state, CONFIG)
    assert c.segment_sizes() == sizes
    p = buyer("new", 3, 7.0, 50.0, start=T0 + 100 * DAY_MS)
    assert c.segment(p, p.last_seen_ms) == a.segment(p, p.last_seen_ms)
    light = SegmentModel.from_dict(a.to_dict(include_users=False), CONFIG)  # checkpoint-sized
    assert light.segment(p, p.last_seen_ms) == a.segment(p, p.last_seen_ms)
    assert light.users == {} and light.segment_sizes() == {}


def test_memory_is_bounded_and_sizes_follow_evictions() -> None:
    m = SegmentModel(SegmentConfig(n_clusters=5, max_users=50))
    replay(m, 500, 2)
    assert len(m.users) == 50
    assert sum(m.segment_sizes().values()) == 50


def test_previous_can_come_from_outside_after_a_restart() -> None:
    m = SegmentModel(CONFIG)
    p = buyer("u9", 2, 3.0, 40.0)
    upd = m.update(p, p.last_purchase_ms, previous="champions")
    assert upd.previous == "champions"
    assert upd.changed == (upd.segment != "champions")


def test_clusters_do_not_depend_on_the_process_hash_seed() -> None:
    """Two processes with different ``PYTHONHASHSEED`` (two workers, or one before and after
    a restart) put every customer in the same cluster: River's KMeans sums over a set of
    feature names, whose order follows the hash seed (models.segments.nearest)."""
    import os
    import subprocess
    import sys

    script = (
        "import orjson\n"
        "from tests.unit.models.test_segments import CONFIG, replay\n"
        "from models.segments import SegmentModel\n"
        "m = SegmentModel(CONFIG)\n"
        "print(orjson.dumps([replay(m, 300, 3), m.to_dict(include_users=False)]).decode())\n"
    )
    def run(seed: str) -> bytes:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        return subprocess.run(
            [sys.executable, "-c", script], capture_output=True, check=True, env=env
        ).stdout

    runs = [run(seed) for seed in ("1", "2", "3")]
    assert runs[0] == runs[1] == runs[2]
    assert len({c for _, _, c in orjson.loads(runs[0])[0]}) > 1  # clusters are in use
