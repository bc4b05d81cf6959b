"""Compiled (numba) sequential Kalman filter, its exact reverse-mode adjoint, and RTS smoother.

Scalar observations, state dimension S, batch B (flattened leading dims). Loops are written out
element by element so that no step allocates: O(T S³) work at compiled speed on one core. The
adjoint is the hand-derived reverse pass of :func:`filter_forward` (no :math:`Q^{-1}` anywhere),
so gradients are exact, not a Fisher-identity approximation.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["filter_backward", "filter_forward", "rts_backward"]

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _mm(A, B, out):  # pragma: no cover - compiled
    """out = A @ B for (n, k) and (k, m) matrices (pass ``A.T`` for a transposed product)."""
    n, inner = A.shape
    for i in range(n):
        for j in range(B.shape[1]):
            acc = 0.0
            for k in range(inner):
                acc += A[i, k] * B[k, j]
            out[i, j] = acc


@_jit
def _predict(A, Q, m_prev, P_prev, mp, Pp, tmp):  # pragma: no cover - compiled
    S = mp.shape[0]
    for i in range(S):
        acc = 0.0
        for j in range(S):
            acc += A[i, j] * m_prev[j]
        mp[i] = acc
    _mm(A, P_prev, tmp)
    for i in range(S):  # Pp = tmp A^T + Q
        for j in range(S):
            acc = Q[i, j]
            for k in range(S):
                acc += tmp[i, k] * A[j, k]
            Pp[i, j] = acc


@_jit
def _innovation(Pp, h, mp, y, R, u):  # pragma: no cover - compiled
    """u = Pp h, s = h^T Pp h + R, v = y - h^T mp for one step; returns (s, v)."""
    S = h.shape[0]
    s = R
    v = y
    for i in range(S):
        acc = 0.0
        for j in range(S):
            acc += Pp[i, j] * h[j]
        u[i] = acc
        s += h[i] * acc
        v -= h[i] * mp[i]
    return s, v


@_jit
def _advance(A, Q, idx, Pinf, m, P, mp, Pp, b, t, observed, tmp):  # pragma: no cover
    """Predict into bin t (the prior at t = 0); without data there, the prediction is the
    filtered state. Returns ``observed``."""
    S = Pinf.shape[0]
    if t == 0:
        for i in range(S):
            mp[b, 0, i] = 0.0
            for j in range(S):
                Pp[b, 0, i, j] = Pinf[i, j]
    else:
        a = idx[t - 1]
        _predict(A[a], Q[a], m[b, t - 1], P[b, t - 1], mp[b, t], Pp[b, t], tmp)
    if not observed:
        m[b, t] = mp[b, t]
        P[b, t] = Pp[b, t]
    return observed


@_jit
def filter_forward(A, Q, idx, h, y, R, mask, Pinf, m, P, mp, Pp, lml):  # pragma: no cover
    """Fill m, P (filtered), mp, Pp (predicted) of shapes (B, T, S[, S]) and lml (B,).

    The step into t uses ``A[idx[t - 1]]`` and ``Q[idx[t - 1]]`` (distinct steps stored once).
    """
    B, T = y.shape
    S = h.shape[0]
    u = np.empty(S)
    tmp = np.empty((S, S))
    for b in range(B):
        total = 0.0
        for t in range(T):
            if not _advance(A, Q, idx, Pinf, m, P, mp, Pp, b, t, mask[b, t], tmp):
                continue
            s, v = _innovation(Pp[b, t], h, mp[b, t], y[b, t], R[b, t], u)
            for i in range(S):
                m[b, t, i] = mp[b, t, i] + u[i] * v / s
                for j in range(S):
                    P[b, t, i, j] = Pp[b, t, i, j] - u[i] * u[j] / s
            total += -0.5 * (math.log(2.0 * math.pi * s) + v * v / s)
        lml[b] = total


@_jit
def filter_backward(A, idx, h, y, R, mask, m, P, mp, Pp, grad_lml):  # pragma: no cover
    """Adjoints of sum_b grad_lml[b] * lml[b] w.r.t. A, Q (U, S, S), h (S,), y, R (B, T), Pinf."""
    B, T = y.shape
    S = h.shape[0]
    gA = np.zeros_like(A)
    gQ = np.zeros((A.shape[0], S, S))
    gh = np.zeros(S)
    gy = np.zeros((B, T))
    gR = np.zeros((B, T))
    gPinf = np.zeros((S, S))
    mbar = np.zeros(S)
    Pbar = np.zeros((S, S))
    mpbar = np.zeros(S)
    Ppbar = np.zeros((S, S))
    u = np.empty(S)
    ubar = np.empty(S)
    tmp = np.empty((S, S))
    for b in range(B):
        mbar[:] = 0.0
        Pbar[:, :] = 0.0
        w = grad_lml[b]
        for t in range(T - 1, -1, -1):
            mp_t = mp[b, t]
            if mask[b, t]:
                s, v = _innovation(Pp[b, t], h, mp_t, y[b, t], R[b, t], u)
                # P = Pp - u u^T / s ; m = mp + u v / s ; l = -0.5 (log 2 pi s + v^2 / s)
                sbar = -0.5 * w * (1.0 / s - v * v / (s * s))
                vbar = -w * v / s
                mu = 0.0
                uPu = 0.0
                for i in range(S):
                    mu += mbar[i] * u[i]
                    for j in range(S):
                        uPu += u[i] * Pbar[i, j] * u[j]
                sbar += uPu / (s * s) - mu * v / (s * s)
                vbar += mu / s
                for i in range(S):
                    acc = 0.0
                    for j in range(S):
                        acc += (Pbar[i, j] + Pbar[j, i]) * u[j]
                    ubar[i] = -acc / s + mbar[i] * v / s + sbar * h[i]
                gy[b, t] = vbar
                gR[b, t] = sbar
                for i in range(S):
                    mpbar[i] = mbar[i] - vbar * h[i]
                    gh[i] += sbar * u[i] - vbar * mp_t[i]
                    acc = 0.0
                    for j in range(S):
                        Ppbar[i, j] = Pbar[i, j] + ubar[i] * h[j]
                        acc += Pp[b, t, j, i] * ubar[j]
                    gh[i] += acc
            else:
                for i in range(S):
                    mpbar[i] = mbar[i]
                    for j in range(S):
                        Ppbar[i, j] = Pbar[i, j]
            if t == 0:
                for i in range(S):
                    for j in range(S):
                        gPinf[i, j] += Ppbar[i, j]
                continue
            a = idx[t - 1]
            At = A[a]
            Pprev = P[b, t - 1]
            mprev = m[b, t - 1]
            for i in range(S):  # Q_bar, tmp = (Ppbar + Ppbar^T) A
                for j in range(S):
                    gQ[a, i, j] += Ppbar[i, j]
                    acc = 0.0
                    for k in range(S):
                        acc += (Ppbar[i, k] + Ppbar[k, i]) * At[k, j]
                    tmp[i, j] = acc
            for i in range(S):  # A_bar += tmp P_prev + mpbar m_prev^T
                for j in range(S):
                    acc = mpbar[i] * mprev[j]
                    for k in range(S):
                        acc += tmp[i, k] * Pprev[k, j]
                    gA[a, i, j] += acc
            for i in range(S):  # m_bar_prev = A^T mpbar ; P_bar_prev = A^T Ppbar A
                acc = 0.0
                for k in range(S):
                    acc += At[k, i] * mpbar[k]
                mbar[i] = acc
            _mm(Ppbar, At, tmp)
            _mm(At.T, tmp, Pbar)
    return gA, gQ, gh, gy, gR, gPinf


@_jit
def _solve_spd(M, rhs, out, L):  # pragma: no cover - compiled
    """out = M^{-1} rhs for SPD M (S, S) and rhs (S, S) by Cholesky; L is scratch."""
    S = M.shape[0]
    for i in range(S):
        for j in range(i + 1):
            acc = M[i, j]
            for k in range(j):
                acc -= L[i, k] * L[j, k]
            if i == j:
                L[i, i] = math.sqrt(max(acc, 1e-300))
            else:
                L[i, j] = acc / L[j, j]
    for c in range(S):
        for i in range(S):  # forward: L z = rhs
            acc = rhs[i, c]
            for k in range(i):
                acc -= L[i, k] * out[k, c]
            out[i, c] = acc / L[i, i]
        for i in range(S - 1, -1, -1):  # backward: L^T x = z
            acc = out[i, c]
            for k in range(i + 1, S):
                acc -= L[k, i] * out[k, c]
            out[i, c] = acc / L[i, i]


@_jit
def rts_backward(A, idx, m, P, mp, Pp, ms, Ps):  # pragma: no cover - compiled
    """Fill smoothed ms, Ps (B, T, S[, S]) from a filter pass."""
    B, T, S = m.shape
    AP = np.empty((S, S))
    G = np.empty((S, S))  # G^T = Pp^{-1} A P
    L = np.empty((S, S))
    dm = np.empty(S)
    dP = np.empty((S, S))
    tmp = np.empty((S, S))
    for b in range(B):
        ms[b, T - 1] = m[b, T - 1]
        Ps[b, T - 1] = P[b, T - 1]
        for t in range(T - 2, -1, -1):
            _mm(A[idx[t]], P[b, t], AP)
            _solve_spd(Pp[b, t + 1], AP, G, L)  # G holds E^T
            for i in range(S):
                dm[i] = ms[b, t + 1, i] - mp[b, t + 1, i]
                for j in range(S):
                    dP[i, j] = Ps[b, t + 1, i, j] - Pp[b, t + 1, i, j]
            for i in range(S):
                acc = m[b, t, i]
                for k in range(S):
                    acc += G[k, i] * dm[k]
                ms[b, t, i] = acc
            _mm(G.T, dP, tmp)  # tmp = E dP (G holds E^T)
            for i in range(S):
                for j in range(i + 1):
                    acc = P[b, t, i, j]
                    for k in range(S):
                        acc += tmp[i, k] * G[k, j]
                    Ps[b, t, i, j] = acc
                    Ps[b, t, j, i] = acc
