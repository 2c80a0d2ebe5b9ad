"""One default per setting (issue 20): a model configuration field that the worker fills from
a setting has no default of its own, so no caller (an evaluation, a script) can run a value
the worker does not run by leaving it out."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import models.anomaly
import models.guard
import models.segments
import models.similarity
import streams.worker.configs as configs
from streams.core.settings import Settings

CLASSES: dict[str, Any] = {
    "RecConfig": models.similarity.RecConfig,
    "SegmentConfig": models.segments.SegmentConfig,
    "AnomalyConfig": models.anomaly.AnomalyConfig,
    "GuardConfig": models.guard.GuardConfig,
}


def fields_from_settings() -> dict[str, set[str]]:
    """Per configuration class: the keyword arguments configs.py computes from ``settings``."""
    tree = ast.parse(Path(inspect.getfile(configs)).read_text())
    out: dict[str, set[str]] = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            if call.func.id in CLASSES:
                out.setdefault(call.func.id, set()).update(
                    kw.arg for kw in call.keywords
                    if kw.arg and any(isinstance(n, ast.Name) and n.id == "settings"
                                      for n in ast.walk(kw.value))
                )  # fmt: skip
    return out


def test_every_model_config_built_by_the_worker_is_checked() -> None:
    assert set(fields_from_settings()) == set(CLASSES)


def test_fields_set_from_settings_have_no_default_of_their_own() -> None:
    doubled = []
    for name, fields in fields_from_settings().items():
        for f in dataclasses.fields(CLASSES[name]):
            has_default = f.default is not dataclasses.MISSING or (
                f.default_factory is not dataclasses.MISSING
            )
            if f.name in fields and has_default:
                doubled.append(f"{name}.{f.name} = {f.default!r}")
    assert doubled == []


def test_the_worker_and_the_recs_evaluation_get_one_window() -> None:
    """The session window measured by ``evaluate recs`` is the worker's (both call
    ``rec_config`` on the one Settings object; docs/recommendations.md's figures use it)."""
    s = Settings()
    assert configs.rec_config(s).session_window == s.rec_session_window == 10
    assert configs.rec_config(s).item_ttl_s == round(s.rec_item_ttl_days * 86_400)
    source = inspect.getsource(__import__("streams.cli.evaluations", fromlist=["x"]))
    assert "config=rec_config(settings)" in source
