r"""Multi-task kernels on (time, task) inputs, as GPyTorch kernels.

Inputs are ``(n, 2)`` tensors: column 0 the time (float axis), column 1 the task index
(0 .. T-1, stored as a float). Both kernels return dense covariances.

**LMC** (:class:`LMCKernel`; ICM when Q = 1), with GPyTorch's ``IndexKernel`` for each
coregionalisation matrix :math:`B_q = W_q W_q^\top + \mathrm{diag}(v_q)`:

.. math:: K((x, i), (x', j)) = \sum_{q=1}^{Q} B_q[i, j]\, k_q(x, x').

**Hierarchical latent interactions** (:class:`InteractionKernel`; Chen et al., ICASSP 2022,
as reconstructed in the project notes). The latents are convolutions
:math:`u_q^{(r)} = g_q * w^{(r)}` of shared white noises :math:`w^{(r)}` (independent over
r = 1..R) with Gaussian smoothing kernels :math:`g_q`, scaled so that every latent has unit
variance and auto-covariance :math:`\exp(-\tau^2 / 2\ell_q^2)`. Their cross-covariance (the
cross-convolution) is

.. math:: k_{qq'}(\tau) = \sqrt{\frac{2\ell_q\ell_{q'}}{\ell_q^2 + \ell_{q'}^2}}
    \exp\Big(-\frac{\tau^2}{\ell_q^2 + \ell_{q'}^2}\Big),

and the tasks :math:`f_i = \sum_r\sum_q a^{(r)}_{iq} u_q^{(r)} + \sum_q \sqrt{v_{qi}}\,
\epsilon_{qi}` (:math:`\epsilon_{qi}` independent, covariance :math:`k_{qq}`) have

.. math:: K((x, i), (x', j)) = \sum_{q, q'} b^{(qq')}_{ij} k_{qq'}(x - x')
    + \delta_{ij}\sum_q v_{qi} k_{qq}(x - x'), \qquad
    b^{(qq')}_{ij} = \sum_r a^{(r)}_{iq} a^{(r)}_{jq'}

(cross-coregionalisation). The q = q' terms are the LMC with squared-exponential latents; the
kernel is positive semi-definite by construction, as the covariance of a linear map of jointly
Gaussian processes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import gpytorch
import torch

from workbench.kernels.batched import dense_kernel

__all__ = ["InteractionKernel", "LMCKernel"]


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :1], x[..., 1].long()


class LMCKernel(gpytorch.kernels.Kernel):
    r"""Linear model of coregionalisation :math:`\sum_q B_q[i, j] k_q(x, x')`.

    Parameters
    ----------
    kernels : sequence of gpytorch Kernel
        One kernel on the time axis per latent (copied).
    n_tasks : int
        T, the number of tasks.
    rank : int
        Rank of each :math:`W_q` (the diagonal :math:`v_q` makes every :math:`B_q` full rank).
    """

    def __init__(self, kernels: Sequence[gpytorch.kernels.Kernel], n_tasks: int, rank: int = 1):
        super().__init__()
        self.latents = torch.nn.ModuleList(copy.deepcopy(k).double() for k in kernels)
        self.coregionalization = torch.nn.ModuleList(
            gpytorch.kernels.IndexKernel(num_tasks=n_tasks, rank=rank).double() for _ in kernels
        )

    def task_matrices(self) -> torch.Tensor:
        """The coregionalisation matrices :math:`B_q`, shape (Q, T, T)."""
        return torch.stack([index.covar_matrix.to_dense() for index in self.coregionalization])

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params):
        (t1, i1), (t2, i2) = _split(x1), _split(x2)
        total = 0.0
        for kernel, B in zip(self.latents, self.task_matrices(), strict=True):
            if diag:
                total = total + kernel(t1, t2, diag=True) * B[i1, i2]
            else:
                total = total + dense_kernel(kernel, t1, t2) * B[i1[:, None], i2[None, :]]
        return total


class InteractionKernel(gpytorch.kernels.Kernel):
    r"""Hierarchical latent interactions: LMC plus cross-covariances of different latents
    (see the module docstring for the formula).

    Parameters
    ----------
    n_tasks, n_latents, rank : int
        T tasks, Q latents, R white-noise sources (the rank of the cross-coregionalisation).
    lengthscale : float
        Initial :math:`\ell_q` of every latent.
    seed : int
        Seed of the coefficients' random start (symmetric starts would stay symmetric); drawn
        from a local generator, so torch's global RNG is untouched.
    """

    def __init__(
        self,
        n_tasks: int,
        n_latents: int,
        rank: int = 1,
        lengthscale: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        positive = gpytorch.constraints.Positive()
        self.register_parameter(
            "raw_lengthscale", torch.nn.Parameter(torch.zeros(n_latents, dtype=torch.float64))
        )
        self.register_constraint("raw_lengthscale", positive)
        self.lengthscale = torch.full((n_latents,), float(lengthscale), dtype=torch.float64)
        gen = torch.Generator().manual_seed(seed)  # symmetric starts would stay symmetric
        coef = 0.5 + 0.1 * torch.randn(rank, n_tasks, n_latents, generator=gen, dtype=torch.float64)
        self.coefficients = torch.nn.Parameter(coef)
        self.register_parameter(
            "raw_task_variance",
            torch.nn.Parameter(torch.zeros(n_latents, n_tasks, dtype=torch.float64)),
        )
        self.register_constraint("raw_task_variance", gpytorch.constraints.Positive())

    @property
    def lengthscale(self) -> torch.Tensor:
        return self.raw_lengthscale_constraint.transform(self.raw_lengthscale)

    @lengthscale.setter
    def lengthscale(self, value: torch.Tensor) -> None:
        raw = self.raw_lengthscale_constraint.inverse_transform(
            torch.as_tensor(value, dtype=torch.float64, device=self.raw_lengthscale.device)
        )
        self.initialize(raw_lengthscale=raw.to(self.raw_lengthscale))

    @property
    def task_variance(self) -> torch.Tensor:
        return self.raw_task_variance_constraint.transform(self.raw_task_variance)

    def cross_coregionalization(self) -> torch.Tensor:
        """:math:`b^{(qq')}_{ij}`, shape (Q, Q, T, T)."""
        return torch.einsum("riq,rjp->qpij", self.coefficients, self.coefficients)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params):
        (t1, i1), (t2, i2) = _split(x1), _split(x2)
        ell = self.lengthscale
        sq = ell[:, None].square() + ell[None, :].square()  # (Q, Q)
        amp = torch.sqrt(2 * ell[:, None] * ell[None, :] / sq)
        B = self.cross_coregionalization()
        if diag:
            lag2 = (t1 - t2)[..., 0].square()
            b = B[:, :, i1, i2]  # (Q, Q, n)
            same = (i1 == i2).to(ell.dtype)
            v = self.task_variance[:, i1] * same  # (Q, n)
        else:
            lag2 = (t1 - t2.mT).square()  # (n, m)
            b = B[:, :, i1[:, None], i2[None, :]]  # (Q, Q, n, m)
            same = (i1[:, None] == i2[None, :]).to(ell.dtype)
            v = self.task_variance[:, i1][..., None] * same  # (Q, n, m)
        pad = (...,) + (None,) * lag2.dim()
        k = amp[pad] * torch.exp(-lag2 / sq[pad])  # (Q, Q, n, m) or (Q, Q, n)
        auto = torch.diagonal(k, dim1=0, dim2=1).movedim(-1, 0)  # k_qq, (Q, ...)
        return (b * k).sum((0, 1)) + (v * auto).sum(0)
