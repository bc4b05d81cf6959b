r"""KL-optimal sparse inverse-Cholesky factors and compiled sparse triangular solves.

A factor U is upper triangular in maximin order with a column pattern :math:`s_j` (earlier
positions, j last); it defines the precision :math:`\hat Q = UU^\top`. Columns are stored
padded: ``index`` (n, m) holds the positions of :math:`s_j` right-aligned (j in the last slot,
-1 where padded) and ``values`` (n, m) the entries.

The KL-optimal factor (Schäfer, Katzfuss and Owhadi 2021, Thm 2.1) minimises
:math:`KL(N(0, K) \,\|\, N(0, (UU^\top)^{-1}))` column by column:
:math:`U_{s_j, j} = L^{-\top} e_{last}` with :math:`L = \mathrm{chol}(K_{s_j s_j})`, i.e. Vecchia's
approximation :math:`U_{jj} = 1/\sigma_j`, :math:`U_{c_j, j} = -b_j/\sigma_j` with kriging weights
:math:`b_j` and conditional variance :math:`\sigma_j^2` of :math:`f_j` given
:math:`f_{c_j}`. Then :math:`KL(p\,\|\,\hat p) = \tfrac12(\sum_j\log\sigma_j^2 - \log|K|)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import torch

__all__ = [
    "kl_factor",
    "padded_pattern",
    "prior_kl",
    "solve_upper",
    "solve_upper_transposed",
    "to_dense",
]

_jit = numba.njit(cache=True, nogil=True)


def padded_pattern(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """CSR pattern by position -> (n, m_max) right-aligned positions, -1 where padded."""
    sizes = np.diff(indptr)
    n, m = sizes.shape[0], int(sizes.max())
    out = np.full((n, m), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n), sizes)
    slots = m - sizes[rows] + (np.arange(indices.shape[0]) - indptr[rows])
    out[rows, slots] = indices
    return out


def kl_factor(
    kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    X: torch.Tensor,  # shape: (n, d) inputs in maximin order
    index: torch.Tensor,  # shape: (b, m) padded pattern of the b columns wanted
    nugget: float = 0.0,
) -> torch.Tensor:
    """Values (b, m) of the KL-optimal factor's columns (zero where padded); differentiable in
    the kernel's parameters. ``kernel(A, B)`` returns dense covariances for batched inputs
    (b, m, d); ``nugget`` is added to the diagonal of every block."""
    valid = index >= 0
    Xg = X[index.clamp_min(0)]  # (b, m, d)
    K = kernel(Xg, Xg)
    pair = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(index.shape[1], dtype=K.dtype, device=K.device)
    K = torch.where(pair, K + nugget * eye, eye)  # padded slots: identity, decoupled
    L = torch.linalg.cholesky(K)
    last = torch.zeros(index.shape[0], index.shape[1], 1, dtype=K.dtype, device=K.device)
    last[:, -1] = 1.0
    cols = torch.linalg.solve_triangular(L.mT, last, upper=True)[..., 0]
    return torch.where(valid, cols, 0.0)


def to_dense(index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The dense (n, n) upper-triangular factor (tests and small problems)."""
    n = index.shape[0]
    U = np.zeros((n, n))
    cols = np.repeat(np.arange(n), index.shape[1]).reshape(index.shape)
    keep = index >= 0
    U[index[keep], cols[keep]] = values[keep]
    return U


def prior_kl(values: np.ndarray, logdet_K: float) -> float:
    r""":math:`KL(N(0, K)\,\|\,N(0, (UU^\top)^{-1}))` of a KL-optimal factor:
    :math:`\tfrac12(\sum_j \log\sigma_j^2 - \log|K|)`, :math:`\sigma_j = 1/U_{jj}`."""
    return 0.5 * (float(-2 * np.log(values[:, -1]).sum()) - logdet_K)


@_jit
def _solve_upper_t(index, values, b):  # pragma: no cover - compiled
    """Solve U^T x = b (forward: row j of U^T is column j of U)."""
    n, m = index.shape
    x = b.copy()
    for j in range(n):
        acc = x[j]
        for a in range(m - 1):
            i = index[j, a]
            if i >= 0:
                acc -= values[j, a] * x[i]
        x[j] = acc / values[j, m - 1]
    return x


@_jit
def _solve_upper(index, values, b):  # pragma: no cover - compiled
    """Solve U x = b (column-oriented back substitution)."""
    n, m = index.shape
    x = b.copy()
    for j in range(n - 1, -1, -1):
        x[j] = x[j] / values[j, m - 1]
        for a in range(m - 1):
            i = index[j, a]
            if i >= 0:
                x[i] -= values[j, a] * x[j]
    return x


def solve_upper_transposed(index: np.ndarray, values: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:math:`x = U^{-\\top} b` for a padded factor, O(nnz) compiled."""
    return _solve_upper_t(index, np.asarray(values, np.float64), np.asarray(b, np.float64))


def solve_upper(index: np.ndarray, values: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:math:`x = U^{-1} b` for a padded factor, O(nnz) compiled."""
    return _solve_upper(index, np.asarray(values, np.float64), np.asarray(b, np.float64))
