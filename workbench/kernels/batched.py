"""Batched copies of GPyTorch kernels: one set of hyper-parameters per task or cluster."""

from __future__ import annotations

import copy

import gpytorch
import torch

__all__ = ["batched_kernel", "squared_exponential"]


def squared_exponential() -> gpytorch.kernels.Kernel:
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
