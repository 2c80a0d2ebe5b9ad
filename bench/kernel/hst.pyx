# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=False, binding=True
"""A typed Cython kernel for :class:`models.hst.HalfSpaceTrees` (issue 20, step 4 prototype).

Prototype, not wired in: :func:`install` replaces three methods of the pure-Python class
(``_leaves``, ``learn_one``, ``score_one``) with these functions. The state stays the
reference's (plain Python lists of ints and floats on the same object), so ``to_dict``,
``from_dict``, orjson and the byte-for-byte checks see exactly what the pure-Python code
produces. The kernel only takes the common shape (every feature present, each a Python
``float``); anything else goes to the reference method, unchanged.
"""

from libc.stdlib cimport free, malloc

from models import hst as _ref

_ref_leaves = _ref.HalfSpaceTrees._leaves
_ref_learn = _ref.HalfSpaceTrees.learn_one
_ref_score = _ref.HalfSpaceTrees.score_one


cdef list _fast_leaves(object h, object x):
    """The leaves of ``x`` (as the reference), or ``None`` when ``x`` is not all floats."""
    cdef list features = h.features
    cdef Py_ssize_t nf = len(features), i, t, d
    cdef list values = [x.get(name) for name in features]
    if values == h._last_values:
        return h._last_leaves
    cdef double *v = <double *> malloc((nf if nf else 1) * sizeof(double))
    if v == NULL:
        raise MemoryError()
    cdef object o
    try:
        for i in range(nf):
            o = values[i]
            if type(o) is not float:
                return None  # missing or not a float: the reference decides
            v[i] = <double> o
        cdef_list = _walk(h, v)
    finally:
        free(v)
    h._last_values, h._last_leaves = values, cdef_list
    return cdef_list


cdef list _walk(object h, double *v):
    cdef int height = h.height
    cdef list splits = h.split, thresholds = h.threshold
    cdef Py_ssize_t n_trees = len(splits), t, d, node
    cdef list split, threshold
    cdef list leaves = [None] * n_trees
    for t in range(n_trees):
        split = <list> splits[t]
        threshold = <list> thresholds[t]
        node = 0
        for d in range(height):  # left (2n+1) if value < threshold, else right (2n+2)
            node = 2 * node + 2 - (v[<Py_ssize_t> split[node]] < <double> threshold[node])
        leaves[t] = node
    return leaves


def leaves(self, x):
    out = _fast_leaves(self, x)
    return _ref_leaves(self, x) if out is None else out


def learn_one(self, x):
    if not self.split:
        return _ref_learn(self, x)
    cdef list lv = _fast_leaves(self, x)
    if lv is None:
        return _ref_learn(self, x)
    cdef list masses = self.l_mass
    cdef Py_ssize_t t, node
    cdef list lm
    for t in range(len(masses)):
        lm = <list> masses[t]
        node = <Py_ssize_t> lv[t]
        while True:  # the leaf's path, leaf to root (the reference adds root to leaf)
            lm[node] = <long> lm[node] + 1
            if node == 0:
                break
            node = (node - 1) >> 1
    self.counter += 1
    if self.counter == self.window_size:  # the window is full: it becomes the reference
        self.r_mass = self.l_mass
        self.l_mass = [[0] * len(r) for r in self.r_mass]
        self.first_window = False
        self.counter = 0
        self._pivot()


def score_one(self, x):
    if self.first_window:
        return 0.0
    cdef list lv = _fast_leaves(self, x)
    if lv is None:
        return _ref_score(self, x)
    cdef list walks = self._walk_score
    cdef double score = 0.0
    cdef Py_ssize_t t
    for t in range(len(walks)):
        score += <double> (<list> walks[t])[<Py_ssize_t> lv[t]]
    return 1 - score / <double> self.max_score


def install():
    """Swap the kernel into :class:`models.hst.HalfSpaceTrees` (a benchmark's opt-in)."""
    _ref.HalfSpaceTrees._leaves = leaves
    _ref.HalfSpaceTrees.learn_one = learn_one
    _ref.HalfSpaceTrees.score_one = score_one


def uninstall():
    _ref.HalfSpaceTrees._leaves = _ref_leaves
    _ref.HalfSpaceTrees.learn_one = _ref_learn
    _ref.HalfSpaceTrees.score_one = _ref_score
