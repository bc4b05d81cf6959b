"""Kalman-smoothed pseudo-observation posteriors against the dense oracle."""

from __future__ import annotations

import torch

from workbench.inference.pseudo_posterior import dense_pseudo_posterior, matern_pseudo_posterior
from workbench.kernels.statespace import matern_sde as ms


def _case(T=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(2, 3, T, generator=gen, dtype=torch.float64)
    lam = torch.rand(2, 3, T, generator=gen, dtype=torch.float64) * 4
    lam[0, 0, 10:25] = 0.0  # missing bins carry no information
    return mu, lam


def test_state_space_posterior_and_kl_equal_the_dense_oracle():
    mu, lam = _case()
    ell = torch.tensor(6.0, dtype=torch.float64)
    fast = matern_pseudo_posterior(mu, lam, ell, nu=2.5)
    t = torch.arange(50, dtype=torch.float64)
    one = torch.ones((), dtype=torch.float64)
    K = ms.matern_covariance(2, ell, one, t[:, None] - t[None, :])
    slow = dense_pseudo_posterior(mu, lam, K)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_kl_is_differentiable_in_lengthscale_and_inputs():
    mu, lam = _case(T=20, seed=1)
    mu.requires_grad_(True)
    ell = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    out = matern_pseudo_posterior(mu, lam, ell)
    (out.kl.sum() + out.mean.sum() + out.var.sum()).backward()
    assert torch.isfinite(ell.grad) and bool(torch.isfinite(mu.grad).all())


def test_kl_is_zero_without_information():
    mu = torch.randn(4, 30, dtype=torch.float64)
    out = matern_pseudo_posterior(mu, torch.zeros_like(mu), torch.tensor(3.0, dtype=torch.float64))
    torch.testing.assert_close(out.kl, torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.var, torch.ones_like(mu), atol=1e-10, rtol=0)
