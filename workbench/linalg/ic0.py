r"""Zero-fill incomplete Cholesky (IC0) of a posterior precision on a maximin pattern.

For the Vecchia–Laplace start of a sparse inverse Cholesky GP: with the prior factor
:math:`\hat U` and likelihood curvatures :math:`w` (all in maximin order), the posterior
precision is :math:`P = \hat U\hat U^\top + \mathrm{diag}(w)`, and IC0 finds the upper-triangular
V with the pattern of :math:`\hat U` such that :math:`VV^\top` matches P on that pattern
(Schäfer, Katzfuss and Owhadi 2021, the noisy-data case). With the full pattern it is the exact
factor of P.

Upper factors are computed from the last column backwards,
:math:`V_{jj} = \tilde P_{jj}^{1/2}`, :math:`V_{ij} = \tilde P_{ij}/V_{jj}` and
:math:`\tilde P_{ab} \mathrel{-}= V_{aj}V_{bj}` for pattern entries (a, b) only; both :math:`P` on
the pattern and the updates are O(n m² log m) compiled loops.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["ic0_posterior", "ic0_robust"]

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _slot(index, col, row):  # pragma: no cover - compiled
    """Slot of ``row`` in column ``col`` of a right-aligned padded pattern, or -1."""
    m = index.shape[1]
    lo, hi = 0, m - 1
    while lo <= hi:  # ascending, with -1 padding first
        mid = (lo + hi) // 2
        value = index[col, mid]
        if value == row:
            return mid
        if value < row:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1


@_jit
def _ic0(index, prior, curvature, out):  # pragma: no cover - compiled
    n, m = index.shape
    P = np.zeros((n, m))
    for k in range(n):  # P = U U^T on the pattern
        for a in range(m):
            i = index[k, a]
            if i < 0:
                continue
            for b in range(a, m):
                j = index[k, b]  # i <= j
                s = _slot(index, j, i)
                if s >= 0:
                    P[j, s] += prior[k, a] * prior[k, b]
    for j in range(n):
        P[j, m - 1] += curvature[j]
    for j in range(n - 1, -1, -1):
        pivot = P[j, m - 1]
        if not pivot > 0.0:
            return j  # breakdown: a non-positive pivot
        root = np.sqrt(pivot)
        for a in range(m):
            if index[j, a] >= 0:
                out[j, a] = P[j, a] / root
        out[j, m - 1] = root
        for a in range(m - 1):
            r = index[j, a]
            if r < 0:
                continue
            for b in range(a, m - 1):
                c = index[j, b]  # r <= c < j: entry (r, c) lives in column c
                s = _slot(index, c, r)
                if s >= 0:
                    P[c, s] -= out[j, a] * out[j, b]
    return -1


def ic0_posterior(index: np.ndarray, prior: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    r"""IC0 factor V (values (n, m) on the padded ``index``) of
    :math:`\hat U\hat U^\top + \mathrm{diag}(\text{curvature})`.

    Raises
    ------
    np.linalg.LinAlgError
        A non-positive pivot (IC0 can break down for indefinite curvatures).
    """
    out = np.zeros(index.shape)
    failed = _ic0(
        np.ascontiguousarray(index, np.int64),
        np.ascontiguousarray(prior, np.float64),
        np.ascontiguousarray(curvature, np.float64),
        out,
    )
    if failed >= 0:
        raise np.linalg.LinAlgError(f"IC0 met a non-positive pivot at position {failed}")
    return out


def ic0_robust(index: np.ndarray, prior: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    """:func:`ic0_posterior`, retried with a growing diagonal shift when it breaks down (the
    shifted factor still serves as a starting q and a preconditioner), and the prior factor
    itself as the last resort."""
    try:
        return ic0_posterior(index, prior, curvature)
    except np.linalg.LinAlgError:
        pass
    scale = float(np.mean(prior[:, -1] ** 2) + np.mean(np.abs(curvature)))
    for shift in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        try:
            return ic0_posterior(index, prior, curvature + shift * scale)
        except np.linalg.LinAlgError:
            continue
    return np.asarray(prior, np.float64).copy()
