"""Half-Space Trees (Tan, Ting & Liu 2011) in flat lists, with plain-JSON state.

The same algorithm as River's :class:`river.anomaly.HalfSpaceTrees` (0.26), and the same
trees, masses and scores for the same seed and inputs (``tests/unit/models/test_hst.py``
checks it against River): the trees are drawn with the same calls on the same
``random.Random(seed)``, in the same order, the first time :meth:`HalfSpaceTrees.learn_one`
is called (each feature's range is [0, 1]). What differs is the layout: every tree is a
complete binary tree stored heap-wise (node ``i`` has children ``2i+1`` and ``2i+2``) in
lists of split features, thresholds and masses, so :meth:`HalfSpaceTrees.to_dict` is a few
lists of numbers and :meth:`HalfSpaceTrees.from_dict` rebuilds the model exactly, without
pickle. ``scripts/bench_hst.py`` measures it against River's.

>>> hst = HalfSpaceTrees(n_trees=5, height=3, window_size=3, seed=42)
>>> X = [0.5, 0.45, 0.43, 0.44, 0.445, 0.45, 0.0]
>>> for x in X[:3]:
...     hst.learn_one({"x": x})
>>> scores = []
>>> for x in X:
...     hst.learn_one({"x": x})
...     scores.append(round(hst.score_one({"x": x}), 3))
>>> scores  # River's docstring example gives the same
[0.107, 0.071, 0.107, 0.107, 0.107, 0.071, 0.853]
>>> HalfSpaceTrees.from_dict(hst.to_dict()).score_one({"x": 0.0}) == hst.score_one({"x": 0.0})
True
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Final

STATE_VERSION: Final = 1
PADDING: Final = 0.15  # River's make_padded_tree padding


class HalfSpaceTrees:
    """Online anomaly scores in [0, 1] (high is anomalous) for features in [0, 1]."""

    def __init__(
        self, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int | None = None
    ) -> None:
        self.n_trees, self.height, self.window_size, self.seed = n_trees, height, window_size, seed
        self.rng = random.Random(seed)  # noqa: S311 - River's tree draws, not crypto
        self.features: list[str] = []  # the names the trees split on (sorted), once built
        self.split: list[list[int]] = []  # per tree, per inner node: index into features
        self.threshold: list[list[float]] = []  # per tree, per inner node
        self.l_mass: list[list[int]] = []  # per tree, per node (heap order: leaves last)
        self.r_mass: list[list[int]] = []
        self.counter = 0
        self.first_window = True
        self._last_values: list[float | None] = []  # the last complete input, and its leaves
        self._last_leaves: list[int] = []
        self._walk_score: list[list[int]] = []  # derived from r_mass at each pivot
        # the nodes from the root to each node (the same in every tree), for learning
        self._paths: list[tuple[int, ...]] = [(0,)]
        for node in range(1, (1 << (height + 1)) - 1):
            self._paths.append((*self._paths[(node - 1) >> 1], node))

    @property
    def max_score(self) -> int:
        """The largest raw score (every node's reference mass full)."""
        return self.n_trees * self.window_size * ((1 << (self.height + 1)) - 1)

    def _build(self, names: list[str]) -> None:
        """Draw the trees exactly as River's ``make_padded_tree`` does (depth first, left
        subtree first, a feature chosen with weight = width of its current range)."""
        self.features = names
        inner, nodes = (1 << self.height) - 1, (1 << (self.height + 1)) - 1
        for _ in range(self.n_trees):
            split, threshold = [0] * inner, [0.0] * inner
            self._grow(0, self.height, {n: (0.0, 1.0) for n in names}, split, threshold)
            self.split.append(split)
            self.threshold.append(threshold)
            self.l_mass.append([0] * nodes)
            self.r_mass.append([0] * nodes)

    def _grow(
        self, node: int, height: int, limits: dict[str, tuple[float, float]], split: list[int],
        threshold: list[float],
    ) -> None:  # fmt: skip
        if height == 0:
            return
        on = self.rng.choices(
            population=list(limits.keys()), weights=[limits[i][1] - limits[i][0] for i in limits]
        )[0]
        a, b = limits[on]
        at = self.rng.uniform(a + PADDING * (b - a), b - PADDING * (b - a))
        split[node], threshold[node] = self.features.index(on), at
        limits[on] = (a, at)
        self._grow(2 * node + 1, height - 1, limits, split, threshold)
        limits[on] = (at, b)
        self._grow(2 * node + 2, height - 1, limits, split, threshold)
        limits[on] = (a, b)

    def _leaves(self, x: Mapping[str, float]) -> list[int]:
        """Per tree, the leaf ``x`` reaches from the root (a leaf names its whole path). A
        missing feature goes to the child with more mass in the current window (left on a
        tie), as in River; with every feature present the leaves depend on ``x`` alone, so
        the last ones are reused (``observe`` scores, then learns, the same ``x``)."""
        values = [x.get(name) for name in self.features]
        if values == self._last_values:
            return self._last_leaves
        height, leaves = self.height, []
        complete = None not in values
        for split, threshold, lm in zip(self.split, self.threshold, self.l_mass, strict=True):
            node = 0
            if complete:
                for _ in range(height):  # left (2n+1) if value < threshold, else right (2n+2)
                    node = 2 * node + 2 - (values[split[node]] < threshold[node])  # type: ignore[operator]
            else:
                for _ in range(height):
                    value, parent = values[split[node]], node
                    node = 2 * node + 1
                    if value is None:
                        node += lm[node] < lm[node + 1]
                    else:
                        node += not value < threshold[parent]
            leaves.append(node)
        if complete:
            self._last_values, self._last_leaves = values, leaves
        return leaves

    def _pivot(self) -> None:
        """Per tree and node, the score of a walk that reaches the node (what River's walk
        adds up: reference mass x 2**depth along the path, stopping below the size limit);
        the reference masses change only here, so scoring is one lookup per tree."""
        size_limit = 0.1 * self.window_size
        self._walk_score = []
        for rm in self.r_mass:
            acc, stopped = [0] * len(rm), [False] * len(rm)
            acc[0], stopped[0] = rm[0], rm[0] < size_limit
            for node in range(1, len(rm)):
                parent = (node - 1) >> 1
                if stopped[parent]:
                    acc[node], stopped[node] = acc[parent], True
                else:
                    depth = (node + 1).bit_length() - 1
                    acc[node] = acc[parent] + rm[node] * (1 << depth)
                    stopped[node] = rm[node] < size_limit
            self._walk_score.append(acc)

    def learn_one(self, x: Mapping[str, float]) -> None:
        if not self.split:
            self._build(sorted(x))
        paths = self._paths
        for lm, leaf in zip(self.l_mass, self._leaves(x), strict=True):
            for node in paths[leaf]:
                lm[node] += 1
        self.counter += 1
        if self.counter == self.window_size:  # the window is full: it becomes the reference
            self.r_mass = self.l_mass
            self.l_mass = [[0] * len(r) for r in self.r_mass]
            self.first_window = False
            self.counter = 0
            self._pivot()

    def score_one(self, x: Mapping[str, float]) -> float:
        if self.first_window:
            return 0.0
        score = 0.0
        for walk, leaf in zip(self._walk_score, self._leaves(x), strict=True):
            score += walk[leaf]
        return 1 - score / self.max_score

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: parameters, the trees and their masses (the random generator is not
        needed once the trees are drawn; before, the seed redraws them the same)."""
        return {
            "v": STATE_VERSION, "n_trees": self.n_trees, "height": self.height,
            "window_size": self.window_size, "seed": self.seed, "features": self.features,
            "split": self.split, "threshold": self.threshold, "l_mass": self.l_mass,
            "r_mass": self.r_mass, "counter": self.counter, "first_window": self.first_window,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HalfSpaceTrees:
        """Inverse of :meth:`to_dict`; raises ValueError on a state of another shape."""
        if d.get("v") != STATE_VERSION:
            raise ValueError(f"half-space trees state version {d.get('v')!r}")
        n_trees, height, window, seed = d["n_trees"], d["height"], d["window_size"], d["seed"]
        if not (0 < n_trees <= 1000 and 0 < height <= 12 and window > 0) or not isinstance(
            seed, int | None
        ):
            raise ValueError("half-space trees parameters out of range")
        h = cls(int(n_trees), int(height), int(window), seed)
        h.features = [str(f) for f in d["features"]]
        h.split = [[int(i) for i in s] for s in d["split"]]
        h.threshold = [[float(v) for v in s] for s in d["threshold"]]
        h.l_mass = [[int(v) for v in s] for s in d["l_mass"]]
        h.r_mass = [[int(v) for v in s] for s in d["r_mass"]]
        h.counter, h.first_window = int(d["counter"]), bool(d["first_window"])
        inner, nodes = (1 << h.height) - 1, (1 << (h.height + 1)) - 1
        trees = h.n_trees if h.split else 0
        shapes = ((h.split, inner), (h.threshold, inner), (h.l_mass, nodes), (h.r_mass, nodes))
        for rows, n in shapes:
            if len(rows) != trees or any(len(r) != n for r in rows):
                raise ValueError("half-space trees state of an inconsistent shape")
        if any(not 0 <= i < len(h.features) for s in h.split for i in s):
            raise ValueError("half-space trees state splits on an unknown feature")
        if h.split:
            h._pivot()
        return h
