r"""Exact maximin ordering and the :math:`\rho`-neighbourhood sparsity pattern, in one pass.

Maximin: start at the point nearest the centroid, then repeatedly take the point farthest from
the points taken so far; its distance :math:`\ell_k` to them is the fill distance at step k
(non-increasing). Column k of the pattern holds the earlier points within
:math:`\rho\,\ell_k` of point k, itself last (Schäfer, Katzfuss and Owhadi, SIAM J. Sci.
Comput. 2021).

The pass is compiled (numba): an indexed max-heap of every untaken point's distance to the
taken set, and a uniform grid of cells for radius queries. When point k is taken only the points
within :math:`\ell_k` of it can get closer, so each step visits a ball, not all points; the total
work is near-linear in n for fixed :math:`\rho` and low dimension. The grid has at most about
4n cells, so in high dimension it degenerates towards O(n²).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

__all__ = ["MaximinPattern", "maximin_pattern"]

_jit = numba.njit(cache=True, nogil=True)


class MaximinPattern(NamedTuple):
    order: np.ndarray  # shape: (n,) point index at each position
    lengths: np.ndarray  # shape: (n,) fill distance l_k at each position (non-increasing)
    indptr: np.ndarray  # shape: (n + 1,) CSR pointers of the pattern, by position
    indices: np.ndarray  # shape: (nnz,) earlier positions of each column, ascending, self last


@_jit
def _sift_up(heap, where, key, h):  # pragma: no cover - compiled
    item = heap[h]
    while h > 0:
        parent = (h - 1) // 2
        if key[heap[parent]] >= key[item]:
            break
        heap[h] = heap[parent]
        where[heap[h]] = h
        h = parent
    heap[h] = item
    where[item] = h


@_jit
def _sift_down(heap, where, key, h, size):  # pragma: no cover - compiled
    item = heap[h]
    while True:
        child = 2 * h + 1
        if child >= size:
            break
        if child + 1 < size and key[heap[child + 1]] > key[heap[child]]:
            child += 1
        if key[heap[child]] <= key[item]:
            break
        heap[h] = heap[child]
        where[heap[h]] = h
        h = child
    heap[h] = item
    where[item] = h


@_jit
def _box(x, radius, low, width, shape, lo, hi):  # pragma: no cover - compiled
    """Cell index ranges [lo, hi] covering the ball of ``radius`` around x."""
    for a in range(x.shape[0]):
        lo[a] = max(0, math.floor((x[a] - radius - low[a]) / width[a]))
        hi[a] = min(shape[a] - 1, math.floor((x[a] + radius - low[a]) / width[a]))


@_jit
def _next_cell(cell, lo, hi):  # pragma: no cover - compiled
    """Odometer step over the box; False when done."""
    for a in range(cell.shape[0]):
        if cell[a] < hi[a]:
            cell[a] += 1
            return True
        cell[a] = lo[a]
    return False


@_jit
def _linear(cell, strides):  # pragma: no cover - compiled
    total = 0
    for a in range(cell.shape[0]):
        total += cell[a] * strides[a]
    return total


@_jit
def _sq_dist(X, i, j):  # pragma: no cover - compiled
    total = 0.0
    for a in range(X.shape[1]):
        diff = X[i, a] - X[j, a]
        total += diff * diff
    return total


@_jit
def _sort(X, rho, first, low, width, shape, strides, start, members):  # pragma: no cover
    n, d = X.shape
    key = np.full(n, np.inf)
    for j in range(n):
        key[j] = math.sqrt(_sq_dist(X, first, j))
    taken = np.zeros(n, dtype=np.bool_)
    position = np.full(n, -1, dtype=np.int64)
    heap = np.argsort(-key)
    where = np.empty(n, dtype=np.int64)
    for h in range(n):
        where[heap[h]] = h
    order = np.empty(n, dtype=np.int64)
    lengths = np.empty(n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(max(16, 8 * n), dtype=np.int64)
    nnz = 0
    lo = np.empty(d, dtype=np.int64)
    hi = np.empty(d, dtype=np.int64)
    cell = np.empty(d, dtype=np.int64)
    # the first point: remove it from the heap (it is the minimum, key 0)
    _remove(heap, where, key, first, n)
    size = n - 1
    taken[first] = True
    position[first] = 0
    order[0] = first
    lengths[0] = np.inf
    indices[0] = 0
    nnz = 1
    indptr[1] = 1
    for k in range(1, n):
        i = heap[0]
        size -= 1
        if size > 0:
            heap[0] = heap[size]
            where[heap[0]] = 0
            _sift_down(heap, where, key, 0, size)
        ell = key[i]
        taken[i] = True
        position[i] = k
        order[k] = i
        lengths[k] = ell
        # pattern column: taken points within rho * ell (positions), self last
        col_start = nnz
        radius = rho * ell
        _box(X[i], radius, low, width, shape, lo, hi)
        cell[:] = lo
        while True:
            c = _linear(cell, strides)
            for s in range(start[c], start[c + 1]):
                p = members[s]
                if taken[p] and p != i and _sq_dist(X, i, p) <= radius * radius:
                    if nnz >= indices.shape[0]:
                        grown = np.empty(2 * indices.shape[0], dtype=np.int64)
                        grown[:nnz] = indices[:nnz]
                        indices = grown
                    indices[nnz] = position[p]
                    nnz += 1
            if not _next_cell(cell, lo, hi):
                break
        indices[col_start:nnz].sort()
        if nnz >= indices.shape[0]:
            grown = np.empty(2 * indices.shape[0], dtype=np.int64)
            grown[:nnz] = indices[:nnz]
            indices = grown
        indices[nnz] = k
        nnz += 1
        indptr[k + 1] = nnz
        # untaken points within ell of i may now be closer to the taken set
        _box(X[i], ell, low, width, shape, lo, hi)
        cell[:] = lo
        while True:
            c = _linear(cell, strides)
            for s in range(start[c], start[c + 1]):
                p = members[s]
                if not taken[p]:
                    dist = math.sqrt(_sq_dist(X, i, p))
                    if dist < key[p]:
                        key[p] = dist
                        _sift_down(heap, where, key, where[p], size)
            if not _next_cell(cell, lo, hi):
                break
    lengths[0] = lengths[1] if n > 1 else 1.0
    return order, lengths, indptr, indices[:nnz].copy()


@_jit
def _remove(heap, where, key, item, size):  # pragma: no cover - compiled
    h = where[item]
    last = heap[size - 1]
    heap[h] = last
    where[last] = h
    if h < size - 1:
        _sift_down(heap, where, key, h, size - 1)
        _sift_up(heap, where, key, where[last])


def _grid(X: np.ndarray) -> tuple:
    n, d = X.shape
    low = X.min(0)
    span = np.maximum(X.max(0) - low, 1e-300)
    per_dim = max(1, math.floor((4.0 * n) ** (1.0 / d)))
    shape = np.full(d, per_dim, dtype=np.int64)
    width = span / per_dim * (1 + 1e-12)
    cells = np.minimum(((X - low) / width).astype(np.int64), shape - 1)
    strides = np.cumprod(np.r_[1, shape[:-1]]).astype(np.int64)
    linear = cells @ strides
    members = np.argsort(linear, kind="stable").astype(np.int64)
    start = np.searchsorted(linear[members], np.arange(int(np.prod(shape)) + 1)).astype(np.int64)
    return low, width, shape, strides, start, members


def maximin_pattern(X: np.ndarray, rho: float) -> MaximinPattern:
    r"""Maximin order of the rows of ``X`` (n, d) and the :math:`\rho`-pattern.

    Parameters
    ----------
    X : array of shape (n, d)
        Inputs, already scaled by the kernel's lengthscales (distances are Euclidean).
    rho : float
        Pattern radius factor (> 0): column k holds the earlier positions within
        :math:`\rho\,\ell_k` of point k.

    Returns
    -------
    MaximinPattern
        ``order`` (point index at each position), ``lengths`` :math:`\ell_k` (with
        :math:`\ell_0 := \ell_1`), and the pattern as CSR over positions.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"expected inputs of shape (n, d) with n >= 1, got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("expected finite inputs, got NaN or infinite coordinates")
    if not rho > 0:
        raise ValueError(f"expected rho > 0, got {rho}")
    low, width, shape, strides, start, members = _grid(X)
    local = X[members]  # points stored cell by cell: radius queries touch contiguous memory
    first = int(np.argmin(((local - X.mean(0)) ** 2).sum(1)))
    identity = np.arange(X.shape[0], dtype=np.int64)
    order, lengths, indptr, indices = _sort(
        local, float(rho), first, low, width, shape, strides, start, identity
    )
    return MaximinPattern(members[order], lengths, indptr, indices)
