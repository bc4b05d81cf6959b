"""Associative-scan filter/smoother against the sequential recursions (first steps included)."""

from __future__ import annotations

import pytest
import torch

from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm import (
    associative_scan,
    kalman_filter,
    parallel_kalman_filter,
    parallel_rts_smoother,
    rts_smoother,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13, 64])
def test_scan_of_a_non_commutative_operator(n):
    g = torch.Generator().manual_seed(n)
    mats = torch.randn(n, 3, 3, generator=g, dtype=torch.float64)
    (out,) = associative_scan(lambda a, b: (b[0] @ a[0],), (mats,))
    expected = mats[0]
    torch.testing.assert_close(out[0], expected)
    for k in range(1, n):
        expected = mats[k] @ expected
        torch.testing.assert_close(out[k], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 3, 10, 257])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
def test_parallel_equals_sequential(T, batch):
    g = torch.Generator().manual_seed(T)
    x = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 10).values
    y = torch.randn(*batch, T, generator=g, dtype=torch.float64)
    mask = torch.rand(*batch, T, generator=g) > 0.25
    kernel = HidaMaternKernel(order=2, frequency=1.3) + MaternKernel(nu=1.5, lengthscale=0.4)
    kernel = kernel.double().requires_grad_(False)
    A, Q = kernel.discretize(x.diff())
    sde = kernel.sde()
    R = 0.05 + 0.1 * torch.rand(*batch, T, generator=g, dtype=torch.float64)
    seq = kalman_filter(A, Q, sde.H, y, R, mask, sde.Pinf)
    par = parallel_kalman_filter(A, Q, sde.H, y, R, mask, sde.Pinf)
    for name, a, b in zip(seq._fields, seq, par, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10, msg=name)
    s_seq, s_par = rts_smoother(A, seq), parallel_rts_smoother(A, par)
    torch.testing.assert_close(s_par.mean, s_seq.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(s_par.cov, s_seq.cov, rtol=0, atol=1e-10)


def test_parallel_gradients_equal_sequential():
    x = torch.linspace(0, 5, 60, dtype=torch.float64)
    y = torch.sin(3 * x)
    mask = torch.ones(60, dtype=torch.bool)
    grads = []
    for fn in (kalman_filter, parallel_kalman_filter):
        kernel = HidaMaternKernel(order=1, lengthscale=0.7, frequency=2.0).double()
        A, Q = kernel.discretize(x.diff())
        sde = kernel.sde()
        lml = fn(A, Q, sde.H, y, torch.tensor(0.1, dtype=torch.float64), mask, sde.Pinf)
        grads.append(torch.autograd.grad(lml.log_marginal, list(kernel.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
