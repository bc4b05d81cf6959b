"""Two-filter smoother against RTS (and so against the dense GP), sequential and parallel."""

from __future__ import annotations

import pytest
import torch

from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm import kalman_filter, reverse_transitions, rts_smoother, two_filter_smoother


def _scaled_ssm(kernel, x):
    A, Q = kernel.discretize(x.diff())
    sde = kernel.sde()
    d = sde.Pinf.diagonal().rsqrt()
    return (d[:, None] * A / d, d[:, None] * Q * d, sde.H / d, d[:, None] * sde.Pinf * d)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda: MaternKernel(nu=0.5, lengthscale=0.7),
        lambda: MaternKernel(nu=2.5, lengthscale=0.9),
        lambda: (
            HidaMaternKernel(order=2, lengthscale=1.5, frequency=2.0)
            + MaternKernel(nu=1.5, lengthscale=0.3)
        ),
    ],
)
def test_two_filter_equals_rts(make, parallel):
    g = torch.Generator().manual_seed(4)
    T = 150
    x = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 10).values
    y = torch.randn(2, T, generator=g, dtype=torch.float64)
    mask = torch.rand(2, T, generator=g) > 0.2
    kernel = make().double().requires_grad_(False)
    A, Q, H, Pinf = _scaled_ssm(kernel, x)
    R = torch.tensor(0.05, dtype=torch.float64)
    rts = rts_smoother(A, kalman_filter(A, Q, H, y, R, mask, Pinf))
    smoothed, forward = two_filter_smoother(A, Q, H, y, R, mask, Pinf, parallel=parallel)
    torch.testing.assert_close(smoothed.mean, rts.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(smoothed.cov, rts.cov, rtol=0, atol=1e-10)
    assert forward.log_marginal.shape == (2,)


def test_reversed_process_has_the_same_stationary_covariance():
    kernel = HidaMaternKernel(order=1, lengthscale=0.8, frequency=3.0).double()
    kernel.requires_grad_(False)
    x = torch.linspace(0, 2, 9, dtype=torch.float64)
    A, _, _, Pinf = _scaled_ssm(kernel, x)
    A_b, Q_b = reverse_transitions(A, Pinf)
    torch.testing.assert_close(A_b @ Pinf @ A_b.mT + Q_b, Pinf.expand_as(Q_b), rtol=0, atol=1e-12)
    # cross-covariance Cov(x_t, x_{t+1}) = Pinf A^T both ways
    torch.testing.assert_close(A_b @ Pinf, (A @ Pinf).mT, rtol=0, atol=1e-12)
