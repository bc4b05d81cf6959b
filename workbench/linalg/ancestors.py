r"""Reduced ancestor sets of a maximin ordering.

:math:`a_j = \{i \le j : \|x_i - x_j\| \le \rho\,\ell_i\}` (note :math:`\ell_i`, the earlier and
larger scale, so :math:`a_j \supseteq s_j`). Solves with the variational factor restricted to
:math:`a_j` give the marginal variances and trace terms of the minibatch ELBO and of
predictions; their size grows like :math:`\rho^d \log n`.

Computed by one compiled pass over the points in order: the ball of radius
:math:`\rho\,\ell_i` around point i, on the same uniform grid as the ordering, names i as an
ancestor of every later point in it (counted first, then filled, so memory is exact).
"""

from __future__ import annotations

import numba
import numpy as np

from workbench.linalg.maximin import _box, _grid, _linear, _next_cell, _sq_dist

__all__ = ["reduced_ancestors"]

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _visit(X, lengths, rho, low, width, shape, strides, start, members, counts, indptr, out):
    """Count (``out`` empty) or fill ancestors; ``members`` maps grid slots to positions."""
    n, d = X.shape
    lo = np.empty(d, dtype=np.int64)
    hi = np.empty(d, dtype=np.int64)
    cell = np.empty(d, dtype=np.int64)
    fill = out.shape[0] > 0
    for i in range(n):
        radius = rho * lengths[i]
        _box(X[i], radius, low, width, shape, lo, hi)
        cell[:] = lo
        while True:
            c = _linear(cell, strides)
            for s in range(start[c], start[c + 1]):
                p = members[s]
                if p > i and _sq_dist(X, i, p) <= radius * radius:
                    if fill:
                        out[indptr[p] + counts[p]] = i
                    counts[p] += 1
            if not _next_cell(cell, lo, hi):
                break


def reduced_ancestors(
    X: np.ndarray, lengths: np.ndarray, rho: float
) -> tuple[np.ndarray, np.ndarray]:
    """Reduced ancestor sets of points ``X`` (n, d) **in maximin order** with fill distances
    ``lengths``: CSR ``(indptr, indices)`` by position, ascending, each set ending with itself."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    low, width, shape, strides, start, members = _grid(X)
    counts = np.zeros(n, dtype=np.int64)
    args = (X, np.asarray(lengths, np.float64), float(rho), low, width, shape, strides, start)
    _visit(*args, members, counts, np.zeros(1, np.int64), np.empty(0, np.int64))
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts + 1)
    out = np.empty(int(indptr[-1]), dtype=np.int64)
    counts[:] = 0
    _visit(*args, members, counts, indptr, out)
    out[indptr[1:] - 1] = np.arange(n)  # each set ends with the point itself
    for_sorting = np.repeat(np.arange(n), np.diff(indptr))
    order = np.lexsort((out, for_sorting))  # ascending within each set (self is the largest)
    return indptr, out[order]
