"""Sums of state-space kernels: block-diagonal SDEs."""

from __future__ import annotations

import torch

from workbench.kernels.spec import register_kernel
from workbench.kernels.statespace.base import SDE, StateSpaceKernel

__all__ = ["StateSpaceSum", "block_diag"]


def block_diag(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Block-diagonal matrix of (*n, r_i, c_i) blocks, batched over the leading dims."""
    batch = torch.broadcast_shapes(*(b.shape[:-2] for b in blocks))
    rows, cols = sum(b.shape[-2] for b in blocks), sum(b.shape[-1] for b in blocks)
    out = blocks[0].new_zeros((*batch, rows, cols))
    r = c = 0
    for b in blocks:
        out[..., r : r + b.shape[-2], c : c + b.shape[-1]] = b
        r, c = r + b.shape[-2], c + b.shape[-1]
    return out


@register_kernel
class StateSpaceSum(StateSpaceKernel):
    r""":math:`k = \sum_i k_i`: state :math:`[x_1; x_2; \dots]`, :math:`H = [H_1, H_2, \dots]`.

    Built by ``k1 + k2`` on state-space kernels.
    """

    def __init__(self, *kernels: StateSpaceKernel) -> None:
        super().__init__()
        if len(kernels) < 2 or not all(isinstance(k, StateSpaceKernel) for k in kernels):
            raise TypeError("expected two or more state-space kernels")
        self.kernels = torch.nn.ModuleList(kernels)

    def get_config(self) -> dict:
        return {}

    def covariance(self, tau: torch.Tensor) -> torch.Tensor:
        return sum(k.covariance(tau) for k in self.kernels)

    def spectral_density(self, omega: torch.Tensor) -> torch.Tensor:
        return sum(k.spectral_density(omega) for k in self.kernels)

    def sde(self) -> SDE:
        parts = [k.sde() for k in self.kernels]
        return SDE(
            F=block_diag([p.F for p in parts]),
            L=block_diag([p.L for p in parts]),
            Qc=block_diag([p.Qc for p in parts]),
            H=torch.cat([p.H for p in parts], dim=-1),
            Pinf=block_diag([p.Pinf for p in parts]),
        )

    def discretize(self, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [k.discretize(dt) for k in self.kernels]
        return block_diag([A for A, _ in parts]), block_diag([Q for _, Q in parts])
