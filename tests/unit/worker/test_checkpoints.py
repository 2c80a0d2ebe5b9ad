"""The per-partition model set: aggregation for /models and /metrics, and checkpoints
(their format and refusals: test_checkpoint_format.py)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from models.bundle import Models, ModelSet
from models.checkpoint import checkpoint_path, save_checkpoint
from streams.core.events import Event
from streams.core.settings import Settings
from streams.domain.profile import features, update_profile
from streams.worker.checkpoints import Checkpointer
from streams.worker.configs import model_factory

FRESH = model_factory(Settings())
DAY = 86_400_000
T0 = 1_704_067_200_000


def teach(models: Models, labels: list[bool]) -> None:
    """Learn one label per entry from slightly different profiles (AUC needs both classes)."""
    for i, y in enumerate(labels):
        p = update_profile(None, Event(f"e{i}", "purchase", f"u{i}", "s", T0, item_id="i",
                                       price=10.0 + i))  # fmt: skip
        models.churn.learn(features(p, T0 + (40 if y else 1) * DAY), None, y, T0)


def test_each_partition_has_its_own_models_created_on_first_use() -> None:
    ms = ModelSet()
    assert ms.get(0, FRESH) is ms.get(0, FRESH)
    assert ms.get(0, FRESH) is not ms.get(1, FRESH)
    teach(ms.get(1, FRESH), [True, False, True])
    assert (ms.get(0, FRESH).churn.model.n_learned, ms.get(1, FRESH).churn.model.n_learned) == (
        0,
        3,
    )


def test_churn_metrics_weight_each_partition_by_its_labels() -> None:
    ms = ModelSet()
    teach(ms.get(0, FRESH), [True, False] * 5)
    teach(ms.get(3, FRESH), [True, False, False, True] * 10)
    a, b = ms.get(0, FRESH).churn.model, ms.get(3, FRESH).churn.model
    m = ms.churn_metrics()
    want = (a.metrics["auc"] * 10 + b.metrics["auc"] * 40) / 50
    assert m["auc"] == pytest.approx(want)
    assert (m["n_learned"], m["n_positive"]) == (50.0, 25.0)
    assert math.isnan(ModelSet().churn_metrics()["auc"])


def test_guard_metrics_of_both_scorers_weight_each_partition_by_its_labels() -> None:
    """What /models and the gauges show: per scorer, the guard's metrics on the labels both
    were scored on, each partition weighted by its (effective) labels; and who alerts."""
    ms = ModelSet()
    for part, n in ((0, 10), (3, 40)):
        g = ms.get(part, FRESH).churn.guard
        for i in range(n):
            y = i % 2 == 0
            g.update(0.7 if y else 0.4, 0.6 if i % 4 else 0.3, y, T0 + i * 3_600_000)
    m = ms.churn_metrics()
    each = [ms.get(p, FRESH).churn.guard.metrics() for p in (0, 3)]
    n = [e["effective_labels"] for e in each]
    want = (each[0]["model"]["auc"] * n[0] + each[1]["model"]["auc"] * n[1]) / sum(n)
    assert m["model"]["auc"] == pytest.approx(want) and m["analytic"]["auc"] == 1.0
    assert m["champions"] == {"analytic": 2} and m["champion"]["auc"] == 1.0
    assert m["model"]["labels"] == pytest.approx(sum(n))


def test_scorers_of_an_older_layout_or_another_horizon_are_replaced() -> None:
    """A checkpoint from before the guard holds a bare learned model trained on other
    features; one trained for another horizon answers another question: fresh scorers."""
    from models.churn import ChurnModel

    ms = ModelSet()
    ms.get(0, FRESH)
    old = ms.get(1, FRESH)
    old.churn = ChurnModel()  # type: ignore[assignment]
    other = ms.get(2, model_factory(Settings(churn_horizon_days=90.0)))
    kept = ms.get(0, FRESH).churn
    assert ms.upgrade(FRESH) == [1, 2]
    assert ms.get(0, FRESH).churn is kept
    assert ms.get(1, FRESH).churn.horizon_days == ms.get(2, FRESH).churn.horizon_days == 30.0
    assert other.churn.model.n_learned == 0
    assert ms.upgrade(FRESH) == []


def test_segment_sizes_add_up_over_partitions() -> None:
    ms = ModelSet()
    for part, uid in ((0, "a"), (1, "b"), (1, "c")):
        p = update_profile(None, Event(f"e{uid}", "view", uid, "s", T0, item_id="i"))
        ms.get(part, FRESH).segments.update(p, T0)
    assert ms.segment_sizes() == {"prospects": 3}


def test_a_checkpoint_of_the_one_bundle_layout_is_refused_not_misread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings(data_dir=str(tmp_path), checkpoint_key="k")
    directory = tmp_path / "checkpoints"
    save_checkpoint(checkpoint_path(directory, 5), FRESH().to_dict(), {}, b"k")
    with caplog.at_level(logging.WARNING):
        restored = Checkpointer(s).restore()
    assert restored.parts == {}
    assert "not a model set state" in caplog.text


async def test_a_saved_model_set_comes_back_with_every_partition(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path), checkpoint_key="k")
    ms = ModelSet()
    teach(ms.get(2, FRESH), [True, False, True])
    ms.get(2, FRESH).seen("events", 2, 41, T0)
    flushed = []

    async def flush() -> None:
        flushed.append(True)

    await Checkpointer(s).save(ms, flush)
    back = Checkpointer(s).restore()
    assert flushed == [True]
    assert sorted(back.parts) == [2]
    assert back.labels_learned == 3
    assert back.offsets == {"events:2": 41}


async def test_the_last_written_checkpoint_is_restored_whatever_its_stream_time(
    tmp_path: Path,
) -> None:
    """Issue 13, case 4: checkpoints were named by stream time, so one written after an
    event dated 2099 stayed the "newest" for good (later ones, with sane times, lost)."""
    settings = Settings(data_dir=str(tmp_path), checkpoint_key="k")
    pointer = Checkpointer(settings)
    poisoned, later = ModelSet(), ModelSet()
    poisoned.get(0, FRESH).stream_time_ms = 4_070_908_800_000  # 2099
    later.get(0, FRESH).stream_time_ms = T0
    teach(later.get(0, FRESH), [True, False, True])

    async def flush() -> None:
        return None

    await pointer.save(poisoned, flush)
    await pointer.save(later, flush)
    restored = Checkpointer(settings).restore()
    assert restored.get(0, FRESH).churn.model.n_learned == 3
    assert restored.stream_time_ms == T0
