"""Parallel-in-time Kalman filtering and RTS smoothing by associative scans (O(log T) depth).

Each time step becomes an element of an associative operator (Särkkä & García-Fernández 2021);
prefix "sums" of the filtering elements are the filtered moments, suffix sums of the smoothing
elements the smoothed ones. Every level of the scan is one batched tensor operation over all
steps, so eager PyTorch runs it at C speed on CPU and in O(log T) sequential depth on GPU.

References
----------
1. S. Särkkä and Á. F. García-Fernández, "Temporal parallelization of Bayesian smoothers",
   IEEE Transactions on Automatic Control 66(1), 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from workbench.ssm.kalman import FilterResult, SmootherResult

__all__ = ["associative_scan", "parallel_kalman_filter", "parallel_rts_smoother"]

Elements = tuple[torch.Tensor, ...]


def associative_scan(
    combine: Callable[[Elements, Elements], Elements], elems: Elements
) -> Elements:
    """Inclusive scan along dim 0: ``out[k] = elems[0] ⊕ elems[1] ⊕ … ⊕ elems[k]``.

    ``combine(earlier, later)`` must be associative and act elementwise along dim 0.

    Examples
    --------
    >>> x = torch.arange(1.0, 6.0)
    >>> associative_scan(lambda a, b: (a[0] + b[0],), (x,))[0].tolist()
    [1.0, 3.0, 6.0, 10.0, 15.0]
    """
    n = elems[0].shape[0]
    if n < 2:
        return elems
    odd = associative_scan(combine, combine(_take(elems, 0, -1), _take(elems, 1, None)))
    tail = tuple(e[2::2] for e in elems)
    even = combine(odd if n % 2 else tuple(o[:-1] for o in odd), tail)
    even = tuple(torch.cat([e[:1], r]) for e, r in zip(elems, even, strict=True))
    return tuple(_interleave(ev, od) for ev, od in zip(even, odd, strict=True))


def _take(elems: Elements, start: int, stop: int | None) -> Elements:
    return tuple(e[start:stop:2] for e in elems)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    m = odd.shape[0]
    pairs = torch.stack([even[:m], odd], dim=1).reshape(2 * m, *odd.shape[1:])
    return torch.cat([pairs, even[m:]]) if even.shape[0] > m else pairs


def _mv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (M @ v[..., None])[..., 0]


def _filter_combine(i: Elements, j: Elements) -> Elements:
    A_i, b_i, C_i, eta_i, J_i = i
    A_j, b_j, C_j, eta_j, J_j = j
    eye = torch.eye(A_i.shape[-1], dtype=A_i.dtype, device=A_i.device)
    # with M = I + C_i J_j:  A_j M^{-1} = solve(M^T, A_j^T)^T; (M^T)^{-1} for eta and J
    lu = torch.linalg.lu_factor(eye + (C_i @ J_j).mT)
    rhs = torch.cat([A_j.mT, (eta_j - _mv(J_j, b_i))[..., None], J_j @ A_i], dim=-1)
    sol = torch.linalg.lu_solve(*lu, rhs)
    S = A_i.shape[-1]
    AjM = sol[..., :S].mT
    A = AjM @ A_i
    b = _mv(AjM, b_i + _mv(C_i, eta_j)) + b_j
    C = AjM @ C_i @ A_j.mT + C_j
    eta = _mv(A_i.mT, sol[..., S]) + eta_i
    J = A_i.mT @ sol[..., S + 1 :] + J_i
    return A, b, 0.5 * (C + C.mT), eta, 0.5 * (J + J.mT)


def parallel_kalman_filter(
    A: torch.Tensor,  # shape: (T-1, S, S)
    Q: torch.Tensor,  # shape: (T-1, S, S)
    H: torch.Tensor,  # shape: (1, S)
    y: torch.Tensor,  # shape: (*batch, T)
    R: torch.Tensor,  # shape: () or (*batch, T)
    mask: torch.Tensor,  # shape: (*batch, T)
    Pinf: torch.Tensor,  # shape: (S, S)
) -> FilterResult:
    """Same contract and results as :func:`workbench.ssm.kalman_filter`, by associative scan."""
    batch, T, S = y.shape[:-1], y.shape[-1], A.shape[-1]
    R = torch.as_tensor(R, dtype=y.dtype, device=y.device).expand(*batch, T)
    yt, Rt, mt = (v.movedim(-1, 0) for v in (y, R, mask))  # time first: (T, *batch)
    h = H[0]
    eye = torch.eye(S, dtype=y.dtype, device=y.device)
    nb = len(batch)
    Ak = A.reshape(T - 1, *([1] * nb), S, S)
    Qk = Q.reshape(T - 1, *([1] * nb), S, S)
    P0 = Pinf.expand(1, *batch, S, S)
    # information weight w = 1/s where observed, 0 where not: unobserved steps carry nothing
    prior = torch.cat([P0, Qk.expand(T - 1, *batch, S, S)])
    Ph = prior @ h
    s = Ph @ h + Rt
    w = torch.where(mt, 1.0 / s, torch.zeros_like(s))
    G = Ph * w[..., None]
    IGH = eye - G[..., :, None] * h
    C = IGH @ prior
    b = G * yt[..., None]
    A_el = torch.cat([torch.zeros_like(P0), IGH[1:] @ Ak])
    HA = torch.cat([torch.zeros_like(Ph[:1]), (Ak.mT @ h).expand(T - 1, *batch, S)])
    eta = HA * (yt * w)[..., None]
    J = HA[..., :, None] * HA[..., None, :] * w[..., None, None]
    _, m, P, _, _ = associative_scan(_filter_combine, (A_el, b, 0.5 * (C + C.mT), eta, J))
    m_pred = torch.cat([torch.zeros_like(m[:1]), _mv(Ak, m[:-1])])
    P_pred = torch.cat([P0, Ak @ P[:-1] @ Ak.mT + Qk])
    s_pred = (P_pred @ h) @ h + Rt
    v = yt - m_pred @ h
    terms = -0.5 * (torch.log(2 * math.pi * s_pred) + v.square() / s_pred)
    log_marginal = torch.where(mt, terms, torch.zeros_like(terms)).sum(0)

    def back(t: torch.Tensor, k: int) -> torch.Tensor:
        return t.movedim(0, -1 - k)

    return FilterResult(back(m, 1), back(P, 2), back(m_pred, 1), back(P_pred, 2), log_marginal)


def _smooth_combine(later: Elements, earlier: Elements) -> Elements:
    # scanned over reversed time, so the first argument is the later (already combined) part
    E_s, g_s, L_s = later
    E_e, g_e, L_e = earlier
    L = E_e @ L_s @ E_e.mT + L_e
    return E_e @ E_s, _mv(E_e, g_s) + g_e, 0.5 * (L + L.mT)


def parallel_rts_smoother(A: torch.Tensor, filtered: FilterResult) -> SmootherResult:
    """Same contract and results as :func:`workbench.ssm.rts_smoother`, by associative scan."""
    m = filtered.mean.movedim(-2, 0)  # (T, *batch, S)
    P = filtered.cov.movedim(-3, 0)  # (T, *batch, S, S)
    P_pred = filtered.pred_cov.movedim(-3, 0)[1:]
    T, S = m.shape[0], m.shape[-1]
    Ak = A.reshape(T - 1, *([1] * (m.ndim - 2)), S, S)
    E = torch.linalg.solve(P_pred, Ak @ P[:-1]).mT
    g = m[:-1] - _mv(E @ Ak, m[:-1])
    L = P[:-1] - E @ P_pred @ E.mT
    elems = (
        torch.cat([E, torch.zeros_like(P[-1:])]),
        torch.cat([g, m[-1:]]),
        torch.cat([0.5 * (L + L.mT), P[-1:]]),
    )
    flipped = tuple(e.flip(0) for e in elems)
    _, g_s, L_s = (e.flip(0) for e in associative_scan(_smooth_combine, flipped))
    return SmootherResult(g_s.movedim(0, -2), L_s.movedim(0, -3))
