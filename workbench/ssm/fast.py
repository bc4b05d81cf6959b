"""Torch entry points to the compiled sequential filter (exact gradients) and RTS smoother."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workbench.ssm.kalman import FilterResult, SmootherResult

__all__ = ["compiled_available", "compiled_kalman_filter", "compiled_rts_smoother"]

try:
    from workbench.ssm import compiled as _compiled
except ImportError:  # numba missing or broken: callers fall back to the scans
    _compiled = None


def compiled_available(*tensors: torch.Tensor) -> bool:
    """True when numba is importable and every tensor is a float64 CPU tensor."""
    return _compiled is not None and all(
        t.device.type == "cpu" and t.dtype == torch.float64 for t in tensors
    )


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _run_filter(A, Q, idx, h, y, R, mask, Pinf) -> tuple[np.ndarray, ...]:
    B, T = y.shape
    S = h.shape[0]
    m, mp = np.empty((B, T, S)), np.empty((B, T, S))
    P, Pp = np.empty((B, T, S, S)), np.empty((B, T, S, S))
    lml = np.empty(B)
    _compiled.filter_forward(A, Q, idx, h, y, R, mask, Pinf, m, P, mp, Pp, lml)
    return m, P, mp, Pp, lml


class _LogMarginal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, A, Q, idx, h, y, R, mask, Pinf):
        arrays = [_np(t) for t in (A, Q, idx, h, y, R, mask, Pinf)]
        m, P, mp, Pp, lml = _run_filter(*arrays)
        ctx.arrays, ctx.states = arrays, (m, P, mp, Pp)
        moments = tuple(torch.from_numpy(a) for a in (m, P, mp, Pp))
        ctx.mark_non_differentiable(*moments)
        return (torch.from_numpy(lml), *moments)

    @staticmethod
    def backward(ctx: Any, grad_lml: torch.Tensor, *unused: torch.Tensor):
        A, _, idx, h, y, R, mask, _ = ctx.arrays
        m, P, mp, Pp = ctx.states
        grads = _compiled.filter_backward(A, idx, h, y, R, mask, m, P, mp, Pp, _np(grad_lml))
        gA, gQ, gh, gy, gR, gPinf = (torch.from_numpy(g) for g in grads)
        return gA, gQ, None, gh, gy, gR, None, gPinf


def _index(T: int, index: torch.Tensor | None) -> torch.Tensor:
    return torch.arange(T - 1) if index is None else index


def compiled_kalman_filter(
    A: torch.Tensor,  # shape: (U, S, S) distinct transitions (U = T-1 without `index`)
    Q: torch.Tensor,  # shape: (U, S, S)
    H: torch.Tensor,  # shape: (1, S)
    y: torch.Tensor,  # shape: (*batch, T)
    R: torch.Tensor,  # shape: () or (*batch, T)
    mask: torch.Tensor,  # shape: (*batch, T)
    Pinf: torch.Tensor,  # shape: (S, S)
    index: torch.Tensor | None = None,  # shape: (T-1,) step k -> k+1 uses A[index[k]]
) -> FilterResult:
    """Same contract as :func:`workbench.ssm.kalman_filter`, compiled; O(T S³) on one core.

    With ``index``, transitions are stored once per distinct step (a regular grid needs one).
    ``log_marginal`` is differentiable (hand-derived adjoint) with respect to ``A``, ``Q``,
    ``H``, ``y``, ``R`` and ``Pinf``; the moments are returned without gradients.
    """
    batch, T = y.shape[:-1], y.shape[-1]
    R = torch.as_tensor(R, dtype=y.dtype).expand(*batch, T).reshape(-1, T)
    flat_mask = mask.expand(y.shape).reshape(-1, T)  # numba does not broadcast (or bound-check)
    idx = _index(T, index)
    lml, m, P, mp, Pp = _LogMarginal.apply(A, Q, idx, H[0], y.reshape(-1, T), R, flat_mask, Pinf)
    S = A.shape[-1]
    return FilterResult(
        m.reshape(*batch, T, S),
        P.reshape(*batch, T, S, S),
        mp.reshape(*batch, T, S),
        Pp.reshape(*batch, T, S, S),
        lml.reshape(batch),
    )


def compiled_rts_smoother(
    A: torch.Tensor, filtered: FilterResult, index: torch.Tensor | None = None
) -> SmootherResult:
    """Same contract as :func:`workbench.ssm.rts_smoother`, compiled (no gradients)."""
    batch, (T, S) = filtered.mean.shape[:-2], filtered.mean.shape[-2:]
    flat = [_np(t.reshape(-1, *t.shape[len(batch) :])) for t in filtered[:4]]
    ms, Ps = np.empty_like(flat[0]), np.empty_like(flat[1])
    _compiled.rts_backward(_np(A), _np(_index(T, index)), *flat, ms, Ps)
    return SmootherResult(
        torch.from_numpy(ms).reshape(*batch, T, S), torch.from_numpy(Ps).reshape(*batch, T, S, S)
    )
