"""Batched copies of GPyTorch kernels: one set of hyper-parameters per task or cluster."""

from __future__ import annotations

import copy

import gpytorch
import torch

__all__ = ["batched_kernel", "dense_kernel", "squared_exponential"]


def squared_exponential() -> gpytorch.kernels.Kernel:
    """The scaled squared exponential :math:`s^2 \\exp(-(t - t')^2 / 2\\ell^2)` (GPyTorch), the
    default kernel of the multi-task models."""
    return gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())


def batched_kernel(kernel: gpytorch.kernels.Kernel, n: int | None) -> gpytorch.kernels.Kernel:
    """A copy of ``kernel`` with every hyper-parameter repeated over a leading batch of ``n``."""
    kernel = copy.deepcopy(kernel).double()
    if n is None:
        return kernel
    for module in kernel.modules():
        if isinstance(module, gpytorch.kernels.Kernel):
            module.batch_shape = torch.Size([n])
        for name, param in list(module.named_parameters(recurse=False)):
            value = param.detach().expand(n, *param.shape).clone()
            setattr(module, name, torch.nn.Parameter(value))
    return kernel


def dense_kernel(
    kernel: gpytorch.kernels.Kernel, x1: torch.Tensor, x2: torch.Tensor
) -> torch.Tensor:
    """``kernel(x1, x2).to_dense()`` for inputs (..., n, 1) and (..., m, 1).

    The (scaled) squared exponential, the default of the multi-task models, is evaluated
    directly: inside an optimiser loop GPyTorch's lazy-tensor dispatch costs more than the
    arithmetic. Any other kernel goes through GPyTorch.
    """
    base = kernel.base_kernel if isinstance(kernel, gpytorch.kernels.ScaleKernel) else kernel
    if type(base) is not gpytorch.kernels.RBFKernel or base.active_dims is not None:
        return kernel(x1, x2).to_dense()
    if x1.shape[-1] != 1 or base.lengthscale.shape[-1] != 1:
        return kernel(x1, x2).to_dense()
    length = base.lengthscale  # (*batch, 1, 1)
    cov = torch.exp(-0.5 * ((x1 - x2.mT) / length).square())
    if base is not kernel:
        cov = kernel.outputscale[..., None, None] * cov
    return cov
