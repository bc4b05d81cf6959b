"""Batched kernels and the direct squared-exponential evaluation."""

from __future__ import annotations

import gpytorch
import pytest
import torch

from workbench.kernels.batched import batched_kernel, dense_kernel, squared_exponential


@pytest.mark.parametrize("batch", [None, 4])
@pytest.mark.parametrize("scaled", [True, False])
def test_direct_squared_exponential_equals_gpytorch(batch, scaled):
    template = squared_exponential() if scaled else gpytorch.kernels.RBFKernel()
    kernel = batched_kernel(template, batch)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in kernel.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64))
    x1 = torch.rand(4, 7, 1, generator=gen, dtype=torch.float64) * 10
    x2 = torch.rand(4, 5, 1, generator=gen, dtype=torch.float64) * 10
    expected = kernel(x1, x2).to_dense()
    got = dense_kernel(kernel, x1, x2)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_other_kernels_go_through_gpytorch():
    kernel = batched_kernel(gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(1.5)), 3)
    x = torch.linspace(0, 5, 6, dtype=torch.float64)[:, None]
    torch.testing.assert_close(dense_kernel(kernel, x, x), kernel(x, x).to_dense())
