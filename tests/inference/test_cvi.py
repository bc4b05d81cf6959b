"""CVI: exact in one step for Gaussian data; state-space CVI equals dense-GP CVI."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from workbench.inference import cvi, sites_to_observations
from workbench.kernels import HidaMaternKernel, MaternKernel
from workbench.likelihoods import Bernoulli, Gaussian, NegativeBinomial, Poisson
from workbench.ssm import kalman_filter, rts_smoother


def _problem(T=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.sort(torch.rand(T, generator=g, dtype=torch.float64) * 10).values
    f = torch.sin(x) + 0.5
    mask = torch.rand(T, generator=g) > 0.15
    return x, f, mask, g


def _ssm_smoother(kernel, x):
    A, Q = kernel.discretize(x.diff())
    sde = kernel.sde()
    h = sde.H[0]

    def smoother(y, noise, mask):
        filtered = kalman_filter(A, Q, sde.H, y, noise, mask, sde.Pinf)
        smoothed = rts_smoother(A, filtered)
        return smoothed.mean @ h, (smoothed.cov @ h) @ h, filtered.log_marginal

    return smoother


def _dense_smoother(kernel, x):
    K = kernel.covariance(x[:, None] - x[None, :])

    def smoother(y, noise, mask):
        if not mask.any():  # no information yet: the prior
            return torch.zeros_like(y), K.diagonal().clone(), torch.zeros((), dtype=y.dtype)
        Ko = K[mask][:, mask] + torch.diag(noise[mask])
        L = torch.linalg.cholesky(Ko)
        Kxo = K[:, mask]
        mean = Kxo @ torch.cholesky_solve(y[mask][:, None], L)[:, 0]
        V = torch.linalg.solve_triangular(L, Kxo.T, upper=False)
        var = K.diagonal() - V.square().sum(0)
        mvn = torch.distributions.MultivariateNormal(torch.zeros_like(y[mask]), scale_tril=L)
        return mean, var, mvn.log_prob(y[mask])

    return smoother


@pytest.fixture
def kernel():
    k = HidaMaternKernel(order=1, lengthscale=2.0, frequency=0.5) + MaternKernel(nu=0.5)
    return k.double().requires_grad_(False)


def test_gaussian_one_step_is_exact(kernel):
    x, f, mask, g = _problem()
    y = f + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    lik = Gaussian(noise=0.09).double()
    result = cvi(y, mask, lik, _ssm_smoother(kernel, x), steps=1, lr=1.0)
    exact = _dense_smoother(kernel, x)(y, lik.noise.detach().expand_as(y), mask)
    torch.testing.assert_close(result.mean, exact[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(result.var, exact[1], rtol=0, atol=1e-10)
    assert result.elbo[0] == pytest.approx(float(exact[2]), abs=1e-9)  # ELBO = log p(y)


def test_poisson_state_space_cvi_equals_dense_cvi(kernel):
    x, f, mask, g = _problem()
    lik = Poisson(bin_width=0.5)
    y = torch.poisson(lik.rate(f), generator=g)
    a = cvi(y, mask, lik, _ssm_smoother(kernel, x), steps=15, lr=0.7)
    b = cvi(y, mask, lik, _dense_smoother(kernel, x), steps=15, lr=0.7)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(a.var, b.var, rtol=0, atol=1e-8)
    assert a.elbo == pytest.approx(b.elbo, rel=1e-9)
    assert torch.corrcoef(torch.stack([a.mean, f]))[0, 1] > 0.8


def test_poisson_elbo_is_non_decreasing_with_full_steps(kernel):
    x, f, mask, g = _problem(seed=1)
    lik = Poisson(bin_width=1.0)
    y = torch.poisson(lik.rate(f), generator=g)
    trace = cvi(y, mask, lik, _ssm_smoother(kernel, x), steps=12, lr=1.0).elbo
    assert all(b >= a - 1e-8 for a, b in itertools.pairwise(trace))
    assert trace[-1] - trace[-2] < 1e-6  # converged


def test_missing_bins_get_no_site(kernel):
    x, f, mask, g = _problem()
    lik = Poisson()
    y = torch.poisson(lik.rate(f), generator=g)
    result = cvi(y, mask, lik, _ssm_smoother(kernel, x), steps=3)
    assert (result.sites.precision[~mask] == 0).all() and (result.sites.info[~mask] == 0).all()
    _, _, site_mask = sites_to_observations(result.sites)
    assert torch.equal(site_mask, mask)


@pytest.mark.parametrize(
    "lik, y",
    [
        (Gaussian(noise=0.3), torch.tensor([0.2, -1.0, 3.0])),
        (Poisson(bin_width=0.5), torch.tensor([0.0, 2.0, 7.0])),
        (Poisson(link="softplus"), torch.tensor([0.0, 2.0, 7.0])),
        (Bernoulli(), torch.tensor([0.0, 1.0, 1.0])),
        (Bernoulli(link="probit"), torch.tensor([0.0, 1.0, 1.0])),
        (NegativeBinomial(dispersion=3.0), torch.tensor([0.0, 2.0, 9.0])),
    ],
)
def test_expected_log_prob_and_derivatives(lik, y):
    lik = lik.double()
    y = y.double()
    m = torch.tensor([-0.5, 0.3, 1.2], dtype=torch.float64)
    v = torch.tensor([0.2, 0.7, 0.05], dtype=torch.float64)
    e = lik.expected_log_prob(y, m, v)
    # brute force: dense Gauss-Hermite rule and central differences
    nodes, weights = np.polynomial.hermite.hermgauss(200)
    nodes = torch.tensor(nodes, dtype=torch.float64)
    weights = torch.tensor(weights, dtype=torch.float64) / math.sqrt(math.pi)

    def brute(mm, vv):
        f = mm[:, None] + torch.sqrt(2 * vv)[:, None] * nodes
        return (lik.log_prob(y[:, None], f) * weights).sum(-1)

    with torch.no_grad():
        torch.testing.assert_close(e.value, brute(m, v), rtol=1e-8, atol=1e-10)
        eps = 1e-5
        dm = (brute(m + eps, v) - brute(m - eps, v)) / (2 * eps)
        dv = (brute(m, v + eps) - brute(m, v - eps)) / (2 * eps)
    torch.testing.assert_close(e.d_mean, dm, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(e.d_var, dv, rtol=1e-5, atol=1e-7)
    g_mean, g_var = lik.expected_gradients(y, m, v)  # the value-free shortcut agrees
    torch.testing.assert_close(g_mean, e.d_mean, rtol=0, atol=1e-14)
    torch.testing.assert_close(g_var, e.d_var, rtol=0, atol=1e-14)


def test_likelihood_arguments_are_validated():
    with pytest.raises(ValueError, match="link"):
        Poisson(link="log")
    with pytest.raises(ValueError, match="bin_width"):
        Poisson(bin_width=0.0)
    with pytest.raises(ValueError, match="link"):
        Bernoulli(link="cloglog")
    with pytest.raises(ValueError, match="dispersion"):
        NegativeBinomial(dispersion=-1.0)
