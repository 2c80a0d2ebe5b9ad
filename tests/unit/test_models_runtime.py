"""The per-partition model set: aggregation for /models and /metrics, and checkpoints."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from models.checkpoint import checkpoint_path, save_checkpoint
from streams.events import Event
from streams.models_runtime import Checkpointer, Models, ModelSet
from streams.profile import features, update_profile
from streams.settings import Settings

DAY = 86_400_000
T0 = 1_704_067_200_000


def teach(models: Models, labels: list[bool]) -> None:
    """Learn one label per entry from slightly different profiles (AUC needs both classes)."""
    for i, y in enumerate(labels):
        p = update_profile(None, Event(f"e{i}", "purchase", f"u{i}", "s", T0, item_id="i",
                                       price=10.0 + i))  # fmt: skip
        models.churn.learn_one(features(p, T0 + (40 if y else 1) * DAY), y)


def test_each_partition_has_its_own_models_created_on_first_use() -> None:
    ms, s = ModelSet(), Settings()
    assert ms.get(0, s) is ms.get(0, s)
    assert ms.get(0, s) is not ms.get(1, s)
    teach(ms.get(1, s), [True, False, True])
    assert (ms.get(0, s).churn.n_learned, ms.get(1, s).churn.n_learned) == (0, 3)


def test_churn_metrics_weight_each_partition_by_its_labels() -> None:
    ms, s = ModelSet(), Settings()
    teach(ms.get(0, s), [True, False] * 5)
    teach(ms.get(3, s), [True, False, False, True] * 10)
    a, b = ms.get(0, s).churn, ms.get(3, s).churn
    m = ms.churn_metrics()
    want = (a.metrics["auc"] * 10 + b.metrics["auc"] * 40) / 50
    assert m["auc"] == pytest.approx(want)
    assert (m["n_learned"], m["n_positive"]) == (50.0, 25.0)
    assert math.isnan(ModelSet().churn_metrics()["auc"])


def test_segment_sizes_add_up_over_partitions() -> None:
    ms, s = ModelSet(), Settings()
    for part, uid in ((0, "a"), (1, "b"), (1, "c")):
        p = update_profile(None, Event(f"e{uid}", "view", uid, "s", T0, item_id="i"))
        ms.get(part, s).segments.update(p, T0)
    assert ms.segment_sizes() == {"prospects": 3}


def test_a_checkpoint_of_the_one_bundle_layout_is_refused_not_misread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings(data_dir=str(tmp_path), checkpoint_key="k")
    directory = tmp_path / "checkpoints"
    save_checkpoint(checkpoint_path(directory, 5), Models.fresh(s), {}, b"k")
    with caplog.at_level(logging.WARNING):
        restored = Checkpointer(s).restore()
    assert restored.parts == {}
    assert "not a ModelSet" in caplog.text


async def test_a_saved_model_set_comes_back_with_every_partition(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path), checkpoint_key="k")
    ms = ModelSet()
    teach(ms.get(2, s), [True, False, True])
    ms.get(2, s).seen("events", 2, 41, T0)
    flushed = []

    async def flush() -> None:
        flushed.append(True)

    await Checkpointer(s).save(ms, flush)
    back = Checkpointer(s).restore()
    assert flushed == [True]
    assert sorted(back.parts) == [2]
    assert back.labels_learned == 3
    assert back.offsets == {"events:2": 41}
