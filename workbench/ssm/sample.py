"""Exact prior samples of a state-space GP in O(T) work and O(log T) depth."""

from __future__ import annotations

import torch

from workbench.ssm.parallel import associative_scan

__all__ = ["sample_state_space_prior"]


def _affine_combine(i: tuple, j: tuple) -> tuple:
    # x -> A_j (A_i x + b_i) + b_j
    A_i, b_i = i
    A_j, b_j = j
    return A_j @ A_i, (A_j @ b_i[..., None])[..., 0] + b_j


def sample_state_space_prior(
    kernel,
    x: torch.Tensor,  # shape: (T,) increasing inputs
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    starts: torch.Tensor | None = None,  # shape: (T,) bool, True where a new series begins
    *,
    seed: int = 0,
) -> torch.Tensor:
    r"""Draws of :math:`f(x)` for a stationary state-space kernel, shape (num_samples, T).

    Simulates :math:`s_1 \sim N(0, P_\infty)`, :math:`s_{k+1} = A_k s_k + q_k`,
    :math:`q_k \sim N(0, Q_k)` and returns :math:`f = H s`; the linear recursion runs as an
    associative scan, so T = 10^6 takes well under a second. With ``starts`` (packed trials),
    each marked bin restarts from :math:`N(0, P_\infty)`, independent of the bins before it.

    Draws are reproducible from ``generator`` or, without one, from ``seed`` (a fresh CPU
    generator, default 0); torch's global RNG is never used or changed.
    """
    generator = torch.Generator().manual_seed(seed) if generator is None else generator
    with torch.no_grad():
        steps = x.diff()
        fresh = None if starts is None else starts[1:]
        if fresh is not None:  # boundary steps are arbitrary; replaced below
            steps = torch.where(fresh, torch.ones_like(steps), steps)
        A, Q = kernel.discretize(steps)
        sde = kernel.sde()
        if fresh is not None:
            A = torch.where(fresh[:, None, None], 0.0, A)
            Q = torch.where(fresh[:, None, None], sde.Pinf, Q)
        S, dtype = sde.F.shape[-1], x.dtype
        d = sde.Pinf.diagonal().rsqrt()  # factor in correlation scaling, as the filters do
        chol = torch.linalg.cholesky(d[:, None] * torch.cat([sde.Pinf[None], Q]) * d[None, :])
        # drawn where the generator lives (CPU by default), then moved: seeded draws are the
        # same on every device
        noise = torch.randn(x.shape[0], num_samples, S, 1, generator=generator, dtype=dtype,
                            device=generator.device).to(x.device)  # fmt: skip
        b = (chol[:, None] @ noise)[..., 0] / d  # (T, n, S)
        A_el = torch.cat([torch.zeros(1, S, S, dtype=dtype, device=x.device), A])[:, None].expand(
            -1, num_samples, -1, -1
        )
        _, states = associative_scan(_affine_combine, (A_el, b))
        return (states @ sde.H[0]).T
