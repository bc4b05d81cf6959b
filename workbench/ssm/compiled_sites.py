"""Compiled (numba) Kalman filter and RTS smoother for vector Gaussian sites on ``f = H s``.

The CVI sites of a multi-latent model live in the K-dimensional latent space; a site
:math:`\\exp(j^\\top f - \\tfrac12 f^\\top J f)` with :math:`J \\succeq 0` (possibly singular) is
absorbed without inverting J or a covariance. The stacked state is large (S = sum of the
latents' state sizes), so the products go through BLAS (``@`` on contiguous blocks) rather than
scalar loops.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["site_filter_forward", "site_rts_backward"]

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _absorb(Pp, mp, H, HT, j, J, m, P):  # pragma: no cover - compiled
    """Posterior (m, P) of N(mp, Pp) times the site; returns log of the normaliser.

    With U = Pp H^T, B = H U, N = I + J B and r = j - J f (f = H mp):
    P = Pp - U N^{-1} J U^T, m = mp + U N^{-1} r and
    log c = -1/2 log|N| + j^T f - 1/2 f^T J f + 1/2 r^T B N^{-1} r.
    """
    K = H.shape[0]
    U = Pp @ HT
    f = H @ mp
    B = H @ U
    N = np.eye(K) + J @ B
    Jf = J @ f
    r = j - Jf
    rhs = np.empty((K, K + 1))
    rhs[:, 0] = r
    rhs[:, 1:] = J
    X = np.linalg.solve(N, rhs)  # [N^{-1} r | N^{-1} J]
    sign, logdet = np.linalg.slogdet(N)
    m[:] = mp + U @ X[:, 0]
    V = U @ np.ascontiguousarray(X[:, 1:].T)  # U (N^{-1} J)^T, so U N^{-1} J U^T = U V^T
    W = U @ V.T
    P[:, :] = Pp - 0.5 * (W + W.T)
    if sign <= 0.0:
        return np.nan
    return -0.5 * logdet + j @ f - 0.5 * f @ Jf + 0.5 * r @ (B @ X[:, 0])


@_jit
def site_filter_forward(
    A, AT, Q, idx, H, j, J, observed, Pinf, m, P, mp, Pp, logc
):  # pragma: no cover
    """Fill m, P, mp, Pp (B, T, S[, S]) and logc (B,) for sites j (B, T, K), J (B, T, K, K).

    The step into t uses ``A[idx[t - 1]]`` (``AT`` holds the transposes); bins with
    ``observed`` False carry no information and are skipped.
    """
    nb, T, _ = j.shape
    HT = np.ascontiguousarray(H.T)
    for b in range(nb):
        total = 0.0
        for t in range(T):
            if t == 0:
                mp[b, 0] = 0.0
                Pp[b, 0] = Pinf
            else:
                a = idx[t - 1]
                mp[b, t] = A[a] @ m[b, t - 1]
                Pp[b, t] = A[a] @ P[b, t - 1] @ AT[a] + Q[a]
            if not observed[b, t]:
                m[b, t] = mp[b, t]
                P[b, t] = Pp[b, t]
                continue
            total += _absorb(Pp[b, t], mp[b, t], H, HT, j[b, t], J[b, t], m[b, t], P[b, t])
        logc[b] = total


@_jit
def site_rts_backward(A, idx, m, P, mp, Pp, ms, Ps):  # pragma: no cover - compiled
    """Smoothed ms, Ps (B, T, S[, S]) from a filter pass (BLAS products, LU solves)."""
    nb, T, _ = m.shape
    for b in range(nb):
        ms[b, T - 1] = m[b, T - 1]
        Ps[b, T - 1] = P[b, T - 1]
        for t in range(T - 2, -1, -1):
            G = np.linalg.solve(Pp[b, t + 1], A[idx[t]] @ P[b, t])  # E^T
            GT = np.ascontiguousarray(G.T)
            ms[b, t] = m[b, t] + GT @ (ms[b, t + 1] - mp[b, t + 1])
            S = P[b, t] + GT @ (Ps[b, t + 1] - Pp[b, t + 1]) @ G
            Ps[b, t] = 0.5 * (S + S.T)
