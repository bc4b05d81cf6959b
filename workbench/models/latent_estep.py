r"""E-step of :class:`LatentTrajectoryGP`: CVI over K state-space latents, joint or mean-field.

Sites live in the latent space. **Joint**: one site per bin,
:math:`\exp(j_t^\top x_t - \tfrac12 x_t^\top J_t x_t)` with a full K × K precision, smoothed on
the stacked (block-diagonal) state by :func:`workbench.ssm.site_filter.site_smoother`, so q keeps
the posterior correlations between latents. **Mean-field**: diagonal :math:`J_t`, each latent
smoothed on its own state (K small passes instead of one large one; cheaper, q factorises).

For :math:`\eta_{nt} = c_n^\top x_t + d_n`, with :math:`g_{nt} = \partial_\mu E_{nt}` and
:math:`w_{nt} = \max(-2\,\partial_{s^2} E_{nt}, 0)`, the natural-gradient targets are

.. math::
    J_t = \sum_n w_{nt} c_n c_n^\top, \qquad j_t = \sum_n g_{nt} c_n + J_t m_t,

(the diagonal of :math:`J_t` for mean-field), damped as :math:`\lambda \leftarrow (1-\beta)
\lambda + \beta\lambda^\ast`. The ELBO is :math:`\sum E - \mathrm{KL}`, with
:math:`\mathrm{KL} = \sum_t E_q\log\tilde t_t - \log Z` and
:math:`\log Z = \log\int p(x)\prod_t\tilde t_t(x_t)\,dx` from the filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from workbench.inference import Sites, sites_to_observations
from workbench.inference.readout import (
    joint_readout_moments,
    readout_moments,
    unit_expectations,
    unit_gradients,
)
from workbench.likelihoods import Likelihood
from workbench.ssm.site_filter import site_smoother

__all__ = ["LatentState", "elbo", "estep", "smooth", "stack_state_space"]


class LatentState(NamedTuple):
    info: torch.Tensor  # shape: (1, K, L) site vectors j
    precision: torch.Tensor  # shape: (1, K, L) mean-field, or (1, L, K, K) joint
    mean: torch.Tensor  # shape: (1, K, L) E_q[x]
    var: torch.Tensor  # shape: (1, K, L) Var_q[x]
    cov: torch.Tensor | None  # shape: (1, L, K, K) joint Cov_q[x_t]; None for mean-field
    log_z: torch.Tensor  # shape: (1,) log Z of the sites

    @property
    def joint(self) -> bool:
        return self.cov is not None

    def eta_moments(self, C: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Mean and variance of the linear predictor, each (1, N, L)."""
        if self.joint:
            return joint_readout_moments(self.mean, self.cov, C, d)
        return readout_moments(self.mean, self.var, C, d)

    def kl(self) -> torch.Tensor:
        """KL(q || p), shape (1,)."""
        j = self.info
        if self.joint:
            Jm = torch.einsum("btkl,blt->bkt", self.precision, self.mean)
            trace = torch.einsum("btkl,btlk->b", self.precision, self.cov)
            quad = (self.mean * Jm).sum((-2, -1)) + trace
        else:
            quad = (self.precision * (self.mean.square() + self.var)).sum((-2, -1))
        return (j * self.mean).sum((-2, -1)) - 0.5 * quad - self.log_z


def stack_state_space(latents: Sequence, x: torch.Tensor, starts: torch.Tensor | None):
    """Block-diagonal (A, Q, H, Pinf, index) of independent latents (differentiable)."""
    parts = [latent._state_space(x, starts) for latent in latents]
    sizes = [p[0].shape[-1] for p in parts]
    S, D = sum(sizes), parts[0][0].shape[0]
    A = parts[0][0].new_zeros(D, S, S)
    Q, Pinf = torch.zeros_like(A), A.new_zeros(S, S)
    H = A.new_zeros(len(parts), S)
    offset = 0
    for k, ((A_k, Q_k, H_k, P_k, _), s) in enumerate(zip(parts, sizes, strict=True)):
        block = slice(offset, offset + s)
        A[:, block, block], Q[:, block, block], Pinf[block, block] = A_k, Q_k, P_k
        H[k, block] = H_k[0]
        offset += s
    return A, Q, H, Pinf, parts[0][-1]


def _normaliser(sites: Sites) -> torch.Tensor:
    """log of the Gaussian normalisers turning pseudo-data likelihoods into site integrals."""
    _, _, seen = sites_to_observations(sites)
    lam = torch.where(seen, sites.precision, torch.ones_like(sites.precision))
    term = 0.5 * (math.log(2 * math.pi) - torch.log(lam)) + 0.5 * sites.info.square() / lam
    return torch.where(seen, term, 0.0).sum((-2, -1))


def smooth(latents, x, starts, info, precision, joint: bool, ssm=None) -> LatentState:
    """Marginals of q given the sites (the smoothing pass of one CVI iteration)."""
    if joint:
        A, Q, H, Pinf, index = ssm if ssm is not None else stack_state_space(latents, x, starts)
        out = site_smoother(A, Q, H, info.transpose(-1, -2), precision, Pinf, index)
        mean = out.mean.transpose(-1, -2)
        var = out.cov.diagonal(0, -2, -1).transpose(-1, -2).clamp_min(0.0)
        return LatentState(info, precision, mean, var, out.cov, out.log_z)
    outs = []
    with torch.no_grad():
        for k, latent in enumerate(latents):
            sites = Sites(info[:, k], precision[:, k])
            outs.append(latent._cvi_smoother(x, starts)(*sites_to_observations(sites)))
    mean, var, lml = (torch.stack([o[i] for o in outs], 1) for i in range(3))
    log_z = lml.sum(1) + _normaliser(Sites(info, precision))
    return LatentState(info, precision, mean, var.clamp_min(0.0), None, log_z)


def _targets(likelihood, y, mask, state: LatentState, C, d):
    """Natural-gradient targets (info, precision) of the sites at the current q."""
    g, g_s2 = unit_gradients(likelihood, y, mask, *state.eta_moments(C, d))
    w = g_s2.mul_(-2.0).clamp_min_(0.0)  # PSD projection (non-log-concave); g_s2 is ours
    grad = torch.einsum("nk,bnt->bkt", C, g)
    if state.joint:
        J = torch.einsum("nk,bnt,nl->btkl", C, w, C)
        return grad + torch.einsum("btkl,blt->bkt", J, state.mean), J
    J = torch.einsum("nk,bnt->bkt", C.square(), w)
    return grad + J * state.mean, J


def _starting_sites(state: LatentState | None, joint: bool, zeros: torch.Tensor):
    """Sites to start from: none (zeros, shape (1, K, L)), or ``state``'s in the E-step's form
    (switching between joint and mean-field keeps the information gathered)."""
    if state is None:
        K, L = zeros.shape[1:]
        return zeros, (zeros.new_zeros(1, L, K, K) if joint else zeros.clone())
    if state.joint == joint:
        return state.info, state.precision
    if joint:
        return state.info, torch.diag_embed(state.precision.transpose(-1, -2))
    return state.info, state.precision.diagonal(0, -2, -1).transpose(-1, -2)


def estep(
    latents: Sequence,
    x: torch.Tensor,  # shape: (L,) packed bin times
    starts: torch.Tensor,  # shape: (L,) trial starts
    y: torch.Tensor,  # shape: (1, N, L)
    mask: torch.Tensor,  # shape: (1, N, L)
    C: torch.Tensor,
    d: torch.Tensor,
    likelihood: Likelihood,
    state: LatentState | None,
    steps: int,
    lr: float,
    joint: bool,
) -> LatentState:
    """``steps`` damped CVI iterations from ``state`` (None: no information, the prior)."""
    with torch.no_grad():
        C, d = C.detach(), d.detach()
        K, L = C.shape[1], x.shape[0]
        ssm = stack_state_space(latents, x, starts) if joint else None
        info, precision = _starting_sites(state, joint, y.new_zeros(1, K, L))
        # always re-smooth: the kernels may have changed since ``state`` was computed
        state = smooth(latents, x, starts, info, precision, joint, ssm)
        for _ in range(steps):
            info, precision = _targets(likelihood, y, mask, state, C, d)
            info = (1 - lr) * state.info + lr * info
            precision = (1 - lr) * state.precision + lr * precision
            state = smooth(latents, x, starts, info, precision, joint, ssm)
    return state


def elbo(likelihood, y, mask, state: LatentState, C, d) -> float:
    """ELBO of q (summed over trials)."""
    with torch.no_grad():
        value, _, _ = unit_expectations(likelihood, y, mask, *state.eta_moments(C, d))
        return float((value - state.kl()).sum())
