"""Compiled (numba) Kalman filter for vector Gaussian sites on a linear projection of the state.

The CVI sites of a multi-latent model live in the K-dimensional latent space
:math:`f = H s` (H: K × S); a site :math:`\\exp(j^\\top f - \\tfrac12 f^\\top J f)` with
:math:`J \\succeq 0` (possibly singular) is absorbed without inverting J or the covariance.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from workbench.ssm.compiled import _advance, _mm

__all__ = ["site_filter_loops"]

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _project(Pp, mp, H, U, Bm, f):  # pragma: no cover - compiled
    """U = Pp H^T (S, K), Bm = H U (K, K), f = H mp (K,)."""
    K, S = H.shape
    _mm(Pp, H.T, U)
    _mm(H, U, Bm)
    for k in range(K):
        acc = 0.0
        for a in range(S):
            acc += H[k, a] * mp[a]
        f[k] = acc


@_jit
def _absorb(Pp, mp, H, j, J, m, P, U, V, Bm, f, N, rhs):  # pragma: no cover - compiled
    """Posterior (m, P) of N(mp, Pp) times the site; returns log of the normaliser.

    With N = I + J B: P = Pp - U N^{-1} J U^T, m = mp + U N^{-1} r, r = j - J f, and
    log c = -1/2 log|N| + j^T f - 1/2 f^T J f + 1/2 r^T B N^{-1} r.
    """
    K, S = H.shape
    _project(Pp, mp, H, U, Bm, f)
    quad = 0.0
    lin = 0.0
    for k in range(K):
        acc = j[k]
        for q in range(K):
            acc -= J[k, q] * f[q]
            s = 0.0
            for a in range(K):
                s += J[k, a] * Bm[a, q]
            N[k, q] = s + (1.0 if k == q else 0.0)
            rhs[k, q + 1] = J[k, q]
            quad += f[k] * J[k, q] * f[q]
        rhs[k, 0] = acc
        lin += j[k] * f[k]
    sign, logdet = np.linalg.slogdet(N)
    X = np.linalg.solve(N, rhs)  # [N^{-1} r | N^{-1} J]
    tail = 0.0
    for k in range(K):
        for q in range(K):
            tail += rhs[k, 0] * Bm[k, q] * X[q, 0]
    for i in range(S):
        acc = mp[i]
        for k in range(K):
            acc += U[i, k] * X[k, 0]
        m[i] = acc
    for i in range(S):  # V = U Z^T with Z = N^{-1} J, so that U Z U^T = U V^T
        for k in range(K):
            acc = 0.0
            for q in range(K):
                acc += U[i, q] * X[k, q + 1]
            V[i, k] = acc
    for i in range(S):
        for c in range(i + 1):
            acc = 0.0
            for k in range(K):
                acc += U[i, k] * V[c, k] + U[c, k] * V[i, k]
            value = Pp[i, c] - 0.5 * acc
            P[i, c] = value
            P[c, i] = value
    if sign <= 0.0:
        return math.nan
    return -0.5 * logdet + lin - 0.5 * quad + 0.5 * tail


@_jit
def site_filter_loops(A, Q, idx, H, j, J, observed, Pinf, m, P, mp, Pp, logc):  # pragma: no cover
    """Fill m, P, mp, Pp (B, T, S[, S]) and logc (B,) for sites j (B, T, K), J (B, T, K, K).

    The step into t uses ``A[idx[t - 1]]``, ``Q[idx[t - 1]]``; bins with ``observed`` False
    carry no information and are skipped.
    """
    B, T, K = j.shape
    S = H.shape[1]
    tmp = np.empty((S, S))
    U = np.empty((S, K))
    V = np.empty((S, K))
    Bm = np.empty((K, K))
    N = np.empty((K, K))
    rhs = np.empty((K, K + 1))
    f = np.empty(K)
    for b in range(B):
        total = 0.0
        for t in range(T):
            if not _advance(A, Q, idx, Pinf, m, P, mp, Pp, b, t, observed[b, t], tmp):
                continue
            total += _absorb(
                Pp[b, t], mp[b, t], H, j[b, t], J[b, t], m[b, t], P[b, t], U, V, Bm, f, N, rhs
            )
        logc[b] = total
