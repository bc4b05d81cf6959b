"""Fourier-domain GP latents: basis, frequency rule, Gram-matrix accuracy, analytic KL."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.inference.fourier import coefficient_kl, fourier_basis, rbf_spectrum, time_moments


def _gram_error(T: int, N: int, ell: float) -> float:
    basis = fourier_basis(T, 10.0, n_circle=N)
    c = rbf_spectrum(basis, torch.tensor(ell, dtype=torch.float64), floor=0.0)
    approx = basis.matrix.T @ torch.diag(c) @ basis.matrix
    t = torch.arange(T, dtype=torch.float64)
    exact = torch.exp(-0.5 * (t[:, None] - t) ** 2 / ell**2)
    return float(torch.linalg.norm(approx - exact) / torch.linalg.norm(exact))


@pytest.mark.parametrize("N", [72, 73, 120])
def test_basis_is_orthonormal_over_the_full_circle(N):
    full = fourier_basis(N, 0.5, n_circle=N)  # every frequency kept
    assert full.matrix.shape == (N, N)
    eye = torch.eye(N, dtype=torch.float64)
    torch.testing.assert_close(full.matrix @ full.matrix.T, eye, atol=1e-13, rtol=0)
    truncated = fourier_basis(N, 10.0, n_circle=N).matrix
    k = truncated.shape[0]
    torch.testing.assert_close(truncated @ truncated.T, eye[:k, :k], atol=1e-13, rtol=0)


def test_frequency_rule_matches_the_reference():
    assert fourier_basis(60, 10.0, n_circle=72).matrix.shape == (12, 60)
    assert fourier_basis(40, 10.0, n_circle=48).matrix.shape == (8, 40)
    assert fourier_basis(60, 10.0, n_circle=120).matrix.shape == (22, 60)
    assert fourier_basis(60, 10.0).n_circle == 100  # default T + 4 l_min


def test_prior_matches_the_rbf_gram_matrix_when_the_circle_is_long_enough():
    assert _gram_error(60, 120, 10.0) < 1e-3
    assert _gram_error(60, 120, 15.0) < 1e-2
    assert _gram_error(60, 100, 10.0) < 1e-2
    # the reference's 1.2 T circle wraps around: about 7 % at l = 10, 43 % at l = 30
    assert 0.05 < _gram_error(60, 72, 10.0) < 0.09
    assert 0.35 < _gram_error(60, 72, 30.0) < 0.5


def test_analytic_kl_equals_monte_carlo_and_a_dense_gaussian_kl():
    gen = torch.Generator().manual_seed(0)
    basis = fourier_basis(40, 5.0)
    c = rbf_spectrum(basis, torch.tensor(7.0, dtype=torch.float64))
    F = c.shape[0]
    m = torch.randn(F, generator=gen, dtype=torch.float64)
    s = 0.3 + torch.rand(F, generator=gen, dtype=torch.float64)
    kl = coefficient_kl(m, s, c)
    q = torch.distributions.MultivariateNormal(m, torch.diag(s**2))
    p = torch.distributions.MultivariateNormal(torch.zeros(F, dtype=torch.float64), torch.diag(c))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p), atol=1e-10, rtol=0)
    draws = q.sample((200_000,))
    mc = (q.log_prob(draws) - p.log_prob(draws)).mean()
    assert abs(float(mc - kl)) < 4 * float(
        (q.log_prob(draws) - p.log_prob(draws)).std()
    ) / math.sqrt(2e5)


def test_time_moments_equal_the_pushed_forward_gaussian():
    gen = torch.Generator().manual_seed(1)
    basis = fourier_basis(30, 4.0)
    F = basis.matrix.shape[0]
    m = torch.randn(2, F, generator=gen, dtype=torch.float64)
    s = torch.rand(2, F, generator=gen, dtype=torch.float64)
    mean, var = time_moments(basis, m, s)
    B = basis.matrix
    for i in range(2):
        cov = B.T @ torch.diag(s[i] ** 2) @ B
        torch.testing.assert_close(mean[i], B.T @ m[i], atol=1e-12, rtol=0)
        torch.testing.assert_close(var[i], torch.diagonal(cov), atol=1e-12, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_bins"):
        fourier_basis(0, 1.0)
    with pytest.raises(ValueError, match="min_lengthscale"):
        fourier_basis(10, 0.0)
    with pytest.raises(ValueError, match="n_circle"):
        fourier_basis(10, 1.0, n_circle=5)
