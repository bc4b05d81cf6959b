"""Kalman filter and RTS smoother against dense float64 GP computations."""

from __future__ import annotations

import pytest
import torch

from workbench.inference import dense_gp_log_marginal, dense_gp_predict
from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.ssm import kalman_filter, rts_smoother

KERNELS = {
    "matern12": lambda: MaternKernel(nu=0.5, lengthscale=0.6),
    "matern52": lambda: MaternKernel(nu=2.5, lengthscale=0.9, outputscale=2.0),
    "hm2": lambda: HidaMaternKernel(order=2, lengthscale=1.2, frequency=3.0),
    "sum": lambda: HidaMaternKernel(order=1, frequency=1.5) + MaternKernel(nu=3.5, lengthscale=2.0),
}


def _problem(batch=(3,), T=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 12).values
    y = torch.sin(x) + 0.3 * torch.randn(*batch, T, generator=g, dtype=torch.float64)
    mask = torch.rand(*batch, T, generator=g) > 0.2
    return x, y, mask


def _ssm(kernel, x):
    A, Q = kernel.discretize(x.diff())
    sde = kernel.sde()
    return A, Q, sde.H, sde.Pinf


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_filter_and_smoother_equal_dense_gp(name):
    kernel = KERNELS[name]().double().requires_grad_(False)
    x, y, mask = _problem()
    noise = torch.tensor(0.05, dtype=torch.float64)
    A, Q, H, Pinf = _ssm(kernel, x)
    filtered = kalman_filter(A, Q, H, y, noise, mask, Pinf)
    smoothed = rts_smoother(A, filtered)
    h = H[0]
    K = kernel.covariance(x[:, None] - x[None, :])
    for b in range(y.shape[0]):
        seen = mask[b]
        Ko = K[seen][:, seen]
        lml = dense_gp_log_marginal(Ko, y[b, seen], noise)
        pred = dense_gp_predict(Ko, K[:, seen], K.diagonal(), y[b, seen], noise)
        assert float(filtered.log_marginal[b]) == pytest.approx(float(lml), abs=1e-10)
        torch.testing.assert_close(smoothed.mean[b] @ h, pred.mean, rtol=0, atol=1e-10)
        torch.testing.assert_close((smoothed.cov[b] @ h) @ h, pred.variance, rtol=0, atol=1e-10)


def test_unobserved_steps_carry_no_information():
    kernel = MaternKernel(nu=1.5).double().requires_grad_(False)
    x, y, mask = _problem(batch=(), T=30)
    A, Q, H, Pinf = _ssm(kernel, x)
    noise = torch.tensor(0.1, dtype=torch.float64)
    a = kalman_filter(A, Q, H, y, noise, mask, Pinf)
    garbage = torch.where(mask, y, torch.full_like(y, 1e6))  # values at masked steps are ignored
    b = kalman_filter(A, Q, H, garbage, noise, mask, Pinf)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    assert float(a.log_marginal) == float(b.log_marginal)
    none = kalman_filter(A, Q, H, y, noise, torch.zeros_like(mask), Pinf)
    assert float(none.log_marginal) == 0.0
    torch.testing.assert_close(none.cov, Pinf.expand_as(none.cov), rtol=0, atol=1e-12)


def test_log_marginal_gradient_matches_finite_differences():
    x, y, mask = _problem(batch=(), T=40)
    noise = torch.tensor(0.05, dtype=torch.float64)
    kernel = MaternKernel(nu=2.5, lengthscale=1.0).double()

    def lml() -> torch.Tensor:
        A, Q, H, Pinf = _ssm(kernel, x)
        return kalman_filter(A, Q, H, y, noise, mask, Pinf).log_marginal

    (grad,) = torch.autograd.grad(lml(), kernel.raw_lengthscale)
    eps = 1e-6
    with torch.no_grad():
        kernel.raw_lengthscale += eps
        up = lml()
        kernel.raw_lengthscale -= 2 * eps
        down = lml()
    assert float(grad) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-6)
