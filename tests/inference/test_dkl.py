"""Double-KL ELBO column terms against dense Gaussian computations."""

from __future__ import annotations

import gpytorch
import numpy as np
import torch

from workbench.inference.dkl import column_terms, elbo_from_terms
from workbench.linalg import maximin_pattern, reduced_ancestors
from workbench.linalg.factor import kl_factor, padded_pattern, to_dense
from workbench.linalg.ic0 import ic0_posterior


def _setup(n=80, rho=1e6, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    pattern = maximin_pattern(X, rho)
    index = padded_pattern(pattern.indptr, pattern.indices)
    Xo = torch.as_tensor(X[pattern.order])
    kernel = gpytorch.kernels.MaternKernel(nu=1.5).double()
    kernel.lengthscale = 0.3
    K = kernel(Xo, Xo).to_dense().detach() + 1e-6 * torch.eye(n, dtype=torch.float64)
    with torch.no_grad():
        prior = kl_factor(lambda a, b: kernel(a, b).to_dense(), Xo, torch.as_tensor(index), 1e-6)
    aptr, aidx = reduced_ancestors(X[pattern.order], pattern.lengths, rho)
    anc = padded_pattern(aptr, aidx)
    f = np.linalg.cholesky(K.numpy()) @ rng.normal(size=n)
    y = f + np.sqrt(noise) * rng.normal(size=n)
    return index, anc, prior.numpy(), K.numpy(), y


def _dense_kl(U, V, nu, mu):
    Q_p, Q_q = U @ U.T, V @ V.T
    S_q = np.linalg.inv(Q_q)
    d = nu - mu
    n = len(nu)
    logdet = -np.linalg.slogdet(Q_p)[1] + np.linalg.slogdet(Q_q)[1]
    return 0.5 * (np.trace(Q_p @ S_q) + d @ Q_p @ d - n + logdet)


def test_full_pattern_terms_equal_the_dense_kl_and_variances():
    index, anc, prior, _, y = _setup()
    n = len(y)
    rng = np.random.default_rng(1)
    V = np.where(index >= 0, 0.3 * rng.normal(size=index.shape), 0.0)
    V[:, -1] = 1.0 + rng.uniform(size=n)
    nu, mu = rng.normal(size=n), np.full(n, 0.2)
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    terms = column_terms(torch.arange(n), t(anc), t(index), t(prior), t(V), t(nu), t(mu))
    elbo = elbo_from_terms(terms, torch.zeros(n, dtype=torch.float64), n)
    Ud, Vd = to_dense(index, prior), to_dense(index, V)
    assert abs(float(elbo) + _dense_kl(Ud, Vd, nu, mu)) < 1e-8 * max(1.0, abs(float(elbo)))
    S_q = np.linalg.inv(Vd @ Vd.T)
    np.testing.assert_allclose(terms.variance.numpy(), np.diag(S_q), rtol=1e-9)
    halves = [column_terms(b, t(anc), t(index), t(prior), t(V), t(nu), t(mu))
              for b in torch.arange(n).split(n // 2)]  # fmt: skip
    zeros = torch.zeros(n // 2, dtype=torch.float64)
    mean_of_batches = sum(float(elbo_from_terms(h, zeros, n)) for h in halves) / 2
    assert abs(mean_of_batches - float(elbo)) < 1e-9 * abs(float(elbo))  # unbiased minibatches


def test_gaussian_elbo_at_the_optimum_is_the_log_marginal_likelihood():
    noise = 0.1
    index, anc, prior, K, y = _setup(noise=noise)
    n = len(y)
    V = ic0_posterior(index, prior, np.full(n, 1 / noise))  # exact posterior factor
    post_cov = np.linalg.inv(np.linalg.inv(K) + np.eye(n) / noise)
    nu = post_cov @ y / noise
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    terms = column_terms(torch.arange(n), t(anc), t(index), t(prior), t(V), t(nu), t(0 * y))
    loglik = -0.5 * (np.log(2 * np.pi * noise) + ((y - nu) ** 2 + terms.variance.numpy()) / noise)
    elbo = float(elbo_from_terms(terms, t(loglik), n))
    C = K + noise * np.eye(n)
    exact = -0.5 * (y @ np.linalg.solve(C, y) + np.linalg.slogdet(C)[1] + n * np.log(2 * np.pi))
    assert abs(elbo - exact) < 1e-8 * abs(exact)


def test_reduced_ancestor_truncation_is_accurate_for_the_ic0_factor():
    index, anc, prior, _, y = _setup(n=300, rho=3.0)
    n = len(y)
    V = ic0_posterior(index, prior, np.full(n, 10.0))
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    terms = column_terms(torch.arange(n), t(anc), t(index), t(prior), t(V), t(y), t(0 * y))
    Vd = to_dense(index, V)
    exact = np.diag(np.linalg.inv(Vd @ Vd.T))
    error = np.abs(terms.variance.numpy() - exact) / exact
    assert np.median(error) < 1e-3 and error.max() < 0.1, (np.median(error), error.max())
